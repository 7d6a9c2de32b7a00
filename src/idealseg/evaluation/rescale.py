"""The scale another centre's unlabelled scans are stored at when they join a dataset
(`prepare --unlabeled DIR --unlabeled-scale-from RUN`): what RUN's `predict` would segment each at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from idealseg.errors import InputError
from idealseg.evaluation.predict import run_normalization
from idealseg.evaluation.predictor import Predictor


def scale_chooser(run: Path, normalization: str) -> Callable[[np.ndarray, tuple[float, float]], float]:
    """The scale search of `run` (a model in physical space, normalised as this dataset is): for a scan
    and its in-plane spacing, the multiple of that spacing the run's `predict` would segment it at.
    Another centre's header may not say how large its anatomy is; joined at the header's spacing, its
    scans are learnt from at a scale prediction never uses (measured: no gain once predict searched)."""
    predictor = Predictor.from_run(run)
    if not predictor.target_spacing:
        raise InputError(run, "--unlabeled-scale-from: the run works at a fixed input size, not in physical space: "
                              "it has no scale to choose")
    if run_normalization(predictor.cfg) != normalization:
        raise InputError(run, f"--unlabeled-scale-from: the run was trained with {run_normalization(predictor.cfg)} "
                              f"normalisation, this dataset uses {normalization}")
    return predictor.choose_scale
