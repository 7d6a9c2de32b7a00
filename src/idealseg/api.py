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

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from idealseg import checks
from idealseg.checks import InvalidValue
from idealseg.config import RunConfig
from idealseg.data.normalize import normalize_volume
from idealseg.data.prepare import prepare
from idealseg.evaluation.evaluate import checked_run_arguments, evaluate_run
from idealseg.evaluation.inference import predict_volume, spacing_mismatch
from idealseg.evaluation.predict import predict_files as _predict_files
from idealseg.evaluation.predict import run_normalization
from idealseg.methods import Method
from idealseg.pipeline import run_stage
from idealseg.pipeline import train as _train
from idealseg.runfolder.folder import load_run, run_largest_component

__all__ = ["prepare", "train", "pretrain", "finetune", "evaluate", "score_masks", "report", "load",
           "Segmenter", "predict_files"]


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


def score_masks(masks: str | Path, labels: str | Path, out: str | Path | None = None,
                classes: list[str] | None = None) -> dict:
    """Score masks made by any tool against reference labels (`idealseg evaluate MASKS --labels LABELS`).

    Args:
        masks: a folder of NIfTI masks, paired with labels by case name (p1.nii.gz, p1_seg.nii.gz and
            p1_0000_seg.nii.gz all belong to case p1).
        labels: a folder of NIfTI reference labels; each needs a mask.
        out: where per_volume.csv, summary.json and table.md go; None writes nothing.
        classes: class names from background; default class_1, class_2, ...

    Returns:
        The summary `evaluate` returns: per-class Dice, HD95 and ASD (mm) as mean, std and undefined count.

    Raises:
        IdealsegError: a missing mask, a mask on another grid, a file that is not a label map (one line).
    """
    from idealseg.evaluation.score_folder import score_folder

    if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
        raise InvalidValue(f"classes {classes!r}: expected a list of class names, background first")
    return score_folder(masks, labels, out, None if classes is None else list(classes))


def report(run: str | Path, split: str | None = None, cases: int = 2) -> Path:
    """Write a run's report (`idealseg report`): curves, evaluation tables, overlays with a colour key.

    Args:
        run: a fine-tuning run folder, or a `train` folder holding `finetune/`.
        split: the split whose labelled volumes the overlays show; default: test, else val, else train.
        cases: how many volumes are shown as overlays.

    Returns:
        The report folder, RUN/report, holding report.md and its PNG figures.

    Raises:
        IdealsegError: a folder that is not a run, a split or count that is not valid (one line).
    """
    from idealseg.evaluation.report import write_report

    return write_report(checks.path(run, "RUN"), split, cases)


@dataclass
class Segmenter:
    """A trained run, loaded once, that segments volumes in memory (what `predict` does per file)."""

    cfg: RunConfig
    method: Method
    device: str
    normalization: str
    largest_component: bool = False  # the post-processing the run's validation chose

    def segment(self, volume: np.ndarray, flip_tta: bool = False, *, spacing: tuple[float, ...] | None = None,
                largest_component: bool | None = None, scale_search: bool = True) -> np.ndarray:
        """Labels uint8 [Z, H, W] for a volume [Z, H, W] of raw intensities (slices along the first axis),
        normalised as the run's training data was. `spacing` in mm, (Z, H, W) or in-plane (H, W): a
        model in physical space (`spacing_mm`) needs it to see the anatomy at its training scale.
        `largest_component` keeps each class's largest connected region (removes stray false positives);
        None: as the run's validation chose. `scale_search`: as `predict`, segment at the multiple of
        `spacing` the model is most confident at (for scans whose anatomy is not at the size it implies)."""
        volume = _volume(volume)
        flip_tta = checks.flag(flip_tta, "flip_tta")
        if spacing is not None:
            spacing = _in_plane(spacing)
            suspect = spacing_mismatch(spacing, self.spacing_mm)
            if suspect:
                warnings.warn(f"volume: {suspect}", stacklevel=2)
        elif self.spacing_mm:
            raise InvalidValue(f"this model works at {self.spacing_mm:g} mm: pass the volume's spacing "
                               "(segment(volume, spacing=(z, y, x)))")
        image = normalize_volume(volume, self.normalization)
        largest_component = checks.optional_flag(largest_component, "largest_component")
        scale_search = checks.flag(scale_search, "scale_search")
        if largest_component is None:
            largest_component = self.largest_component
        return predict_volume(self.method.predict, image, self.cfg.input_size, self.device, flip_tta=flip_tta,
                              spacing=spacing, target_spacing=self.spacing_mm, largest_component=largest_component,
                              amp=self.cfg.amp, scale_search=scale_search)

    @property
    def spacing_mm(self) -> float:
        """The in-plane spacing the model works at, in mm; 0 where it knows no physical size."""
        return float(self.cfg.spacing_mm)

    @property
    def classes(self) -> list[str]:
        """Class names, background first, as the run was trained on (index = label value in a mask)."""
        return list(self.cfg.classes)


def _volume(volume: Any) -> np.ndarray:
    """A [Z, H, W] array of finite intensities, or the error that says what it is instead."""
    try:
        array = np.asarray(volume, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidValue(f"volume: expected a [Z, H, W] array of numbers, got {type(volume).__name__}") from None
    if array.ndim != 3 or min(array.shape) == 0:
        raise InvalidValue(f"expected a [Z, H, W] volume, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidValue("volume contains NaN or Inf values")
    return array


def _in_plane(spacing: Any) -> tuple[float, float]:
    """The in-plane (H, W) spacing of a (Z, H, W) or (H, W) spacing in mm."""
    try:
        values = np.atleast_1d(np.asarray(spacing, dtype=float)).tolist()
    except (TypeError, ValueError):
        values = []
    if len(values) not in (2, 3) or not all(np.isfinite(v) and v > 0 for v in values[-2:]):
        raise InvalidValue(f"spacing must be (Z, H, W) or (H, W) in mm, the in-plane values > 0; got {spacing}")
    return tuple(values[-2:])


def load(run: str | Path, checkpoint: str = "last", device: str | None = None) -> Segmenter:
    """Load a fine-tuning run folder (or a `train` folder) for segmentation."""
    run, _, checkpoint, device = checked_run_arguments(run, "val", checkpoint, device)
    cfg, method, _ = load_run(run, checkpoint, device)
    return Segmenter(cfg, method, device, run_normalization(cfg), run_largest_component(run))


def predict_files(run: str | Path, src: str | Path, out: str | Path, checkpoint: str = "last", flip_tta: bool = False,
                  device: str | None = None, **options: Any) -> list[Path]:
    """Segment NIfTI files (`idealseg predict`): masks keep each input's geometry; returns their paths."""
    run, _, checkpoint, device = checked_run_arguments(run, "val", checkpoint, device)
    src, out = checks.path(src, "INPUT"), checks.output_path(out, "OUT")
    for name in ("overwrite", "largest_component", "scale_search"):
        if options.get(name) is not None:
            checks.flag(options[name], f"--{name.replace('_', '-')}")
    return _predict_files(run, src, out, checkpoint, checks.flag(flip_tta, "--tta"), device, **options)
