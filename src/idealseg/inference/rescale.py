"""The scale another centre's unlabelled scans are stored at when they join a dataset
(`prepare --unlabeled DIR --unlabeled-scale-from RUN`): what RUN's `predict` would segment each at."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from idealseg.errors import InputError
from idealseg.inference.predict import run_normalization
from idealseg.inference.predictor import Predictor

FAR_SPACING = 2.0  # a run working this many times finer or coarser than the dataset's scans is another dataset's


def scale_chooser(run: Path, normalization: str, classes: list[str] | None = None,
                  spacing: float | None = None) -> Callable[[np.ndarray, tuple[float, float]], float]:
    """The scale search of `run` (a model in physical space, normalised as this dataset is, of its
    `classes` and working near its median in-plane `spacing` in mm; None: not known): for a scan and its
    in-plane spacing, the multiple of that spacing the run's `predict` would segment it at.
    Another centre's header may not say how large its anatomy is; joined at the header's spacing, its
    scans are learnt from at a scale prediction never uses (measured: no gain once predict searched).
    A run of another dataset (other classes, another scale) would choose by anatomy it never learnt."""
    predictor = Predictor.from_run(run)
    if not predictor.target_spacing:
        raise InputError(run, "--unlabeled-scale-from: the run works at a fixed input size, not in physical space: "
                              "it has no scale to choose")
    if run_normalization(predictor.cfg) != normalization:
        raise InputError(run, f"--unlabeled-scale-from: the run was trained with {run_normalization(predictor.cfg)} "
                              f"normalisation, this dataset uses {normalization}")
    check_same_task(run, list(predictor.cfg.classes), float(predictor.target_spacing), classes, spacing)
    return predictor.choose_scale


def check_same_task(run: Path, run_classes: list[str], run_spacing: float, classes: list[str] | None,
                    spacing: float | None) -> None:
    """A run for --unlabeled-scale-from segments this dataset's classes at about its spacing: one line
    with both otherwise."""
    if classes is not None and run_classes != list(classes):
        raise InputError(run, f"--unlabeled-scale-from: the run segments {', '.join(run_classes)}; this dataset's "
                              f"classes are {', '.join(classes)}: give a run trained on this dataset's task")
    if spacing and run_spacing and max(spacing / run_spacing, run_spacing / spacing) > FAR_SPACING:
        raise InputError(run, f"--unlabeled-scale-from: the run works at {run_spacing:.4g} mm in-plane, this "
                              f"dataset's scans are at {spacing:.4g} mm (median), over {FAR_SPACING:g}x apart: "
                              "give a run trained on scans like this dataset's")
