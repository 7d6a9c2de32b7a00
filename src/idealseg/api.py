"""The Python API: the command line's steps as functions, for scripts and notebooks.

Every function here is what a CLI subcommand calls, so a script and the command line give the same
run folders and the same numbers:

    import idealseg
    dataset = idealseg.prepare("ssl4mis", "data/acdc", "../shared/data/acdc")
    idealseg.train(dataset, "runs/ideal7", labeled="ssl4mis:7")
    print(idealseg.evaluate("runs/ideal7", split="val")["classes"]["mean"]["dice"]["mean"])
    mask = idealseg.load("runs/ideal7").segment(volume)          # [Z, H, W] -> uint8 labels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from idealseg.config import RunConfig
from idealseg.data.normalize import normalize_volume
from idealseg.data.prepare import prepare
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.evaluation.inference import predict_volume
from idealseg.evaluation.predict import predict_files, run_normalization
from idealseg.methods import Method
from idealseg.pipeline import run_stage
from idealseg.pipeline import train as _train
from idealseg.runfolder.folder import load_run, run_largest_component

__all__ = ["prepare", "train", "pretrain", "finetune", "evaluate", "load", "Segmenter", "predict_files"]


def train(dataset: str | Path, out: str | Path, **options: Any) -> Path:
    """Pre-train then fine-tune (`idealseg train`) into `out`; returns the fine-tuning run folder.

    `options` are any `RunConfig` fields plus `profile`, `method`, `pretrain_method`, `skip_pretrain`,
    `resume` and `overwrite`, as on the command line (`labeled="ssl4mis:7"`, `profile="cpu"`, ...).
    """
    _train(dataset, out, **options)
    return Path(out) / "finetune"


def pretrain(dataset: str | Path, out: str | Path, **options: Any) -> Path:
    """Contrastive pre-training of the encoder (`idealseg pretrain`); returns `out`."""
    run_stage("pretrain", dataset, out, **options)
    return Path(out)


def finetune(dataset: str | Path, out: str | Path, **options: Any) -> Path:
    """Fine-tuning with any method (`idealseg finetune`; `init=` a pre-training run); returns `out`."""
    run_stage("finetune", dataset, out, **options)
    return Path(out)


def evaluate(run: str | Path, split: str = "val", **options: Any) -> dict:
    """Dice, HD95 and ASD per volume and class (`idealseg evaluate`); returns the summary it writes."""
    return evaluate_run(run, split, **options)


@dataclass
class Segmenter:
    """A trained run, loaded once, that segments volumes in memory (what `predict` does per file)."""

    cfg: RunConfig
    method: Method
    device: str
    normalization: str
    largest_component: bool = False  # the post-processing the run's validation chose

    def segment(self, volume: np.ndarray, flip_tta: bool = False, *, spacing: tuple[float, ...] | None = None,
                largest_component: bool | None = None) -> np.ndarray:
        """Labels uint8 [Z, H, W] for a volume [Z, H, W] of raw intensities (slices along the first axis),
        normalised as the run's training data was. `spacing` in mm, (Z, H, W) or in-plane (H, W): a
        model in physical space (`spacing_mm`) needs it to see the anatomy at its training scale.
        `largest_component` keeps each class's largest connected region (removes stray false positives);
        None: as the run's validation chose."""
        volume = np.asarray(volume, dtype=np.float32)
        if volume.ndim != 3:
            raise ValueError(f"expected a [Z, H, W] volume, got shape {volume.shape}")
        if spacing is not None:
            values = np.atleast_1d(np.asarray(spacing, dtype=float)).tolist()
            if len(values) not in (2, 3) or not all(np.isfinite(v) and v > 0 for v in values[-2:]):
                raise ValueError(f"spacing must be (Z, H, W) or (H, W) in mm, the in-plane values > 0; got {spacing}")
            spacing = tuple(values[-2:])
        elif self.spacing_mm:
            raise ValueError(f"this model works at {self.spacing_mm:g} mm: pass the volume's spacing "
                             "(segment(volume, spacing=(z, y, x)))")
        image = normalize_volume(volume, self.normalization)
        if largest_component is None:
            largest_component = self.largest_component
        return predict_volume(self.method.predict, image, self.cfg.input_size, self.device, flip_tta=flip_tta,
                              spacing=spacing, target_spacing=self.spacing_mm, largest_component=largest_component,
                              amp=self.cfg.amp)

    @property
    def spacing_mm(self) -> float:
        """The in-plane spacing the model works at, in mm; 0 where it knows no physical size."""
        return float(self.cfg.spacing_mm)

    @property
    def classes(self) -> list[str]:
        """Class names, background first, as the run was trained on (index = label value in a mask)."""
        return list(self.cfg.classes)


def load(run: str | Path, checkpoint: str = "last", device: str | None = None) -> Segmenter:
    """Load a fine-tuning run folder (or a `train` folder) for segmentation."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg, method, _ = load_run(run, checkpoint, device)
    return Segmenter(cfg, method, device, run_normalization(cfg), run_largest_component(run))
