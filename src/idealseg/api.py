"""The Python API: the command line's steps as functions, for scripts and notebooks.

Every function here is what a CLI subcommand calls, so a script and the command line give the same
run folders and the same numbers:

    import idealseg
    dataset = idealseg.prepare("ssl4mis", "../shared/data/acdc", "data/acdc")
    idealseg.train(dataset, "runs/ideal7", labeled="ssl4mis:7")
    print(idealseg.evaluate("runs/ideal7", split="val")["classes"]["mean"]["dice"]["mean"])
    mask = idealseg.load("runs/ideal7").segment(volume)          # [Z, H, W] -> uint8 labels
    mask = idealseg.load("runs/ideal7").segment("scan.nii.gz", out="scan_seg.nii.gz")  # in the scan's geometry
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from idealseg import checks
from idealseg.checks import InvalidValue
from idealseg.config import RunConfig
from idealseg.data.channels import check_same_grid, scan_cases, stack_channels
from idealseg.data.nifti_io import NiftiScan, read_scan, scan_of_image
from idealseg.data.prepare import prepare as _prepare
from idealseg.errors import InputError
from idealseg.evaluation.evaluate import checked_run_arguments, evaluate_run
from idealseg.inference.predict import (
    check_mask_folder,
    check_scan_spacing,
    check_target,
    mask_in_source,
    plan_outputs,
    run_normalization,
    write_mask,
)
from idealseg.inference.predict import predict_files as _predict_files
from idealseg.inference.predictor import Predictor
from idealseg.inference.rescale import scale_chooser
from idealseg.inference.spacing import in_plane, spacing_mismatch
from idealseg.pipeline import run_stage
from idealseg.pipeline import train as _train
from idealseg.transforms.normalize import normalize_channels

__all__ = ["prepare", "train", "pretrain", "finetune", "evaluate", "score_masks", "report", "load",
           "Segmenter", "predict_files"]


def prepare(source: str, src: str | Path | None = None, out: str | Path | None = None, **options: Any) -> Path:
    """Import a dataset into a dataset folder (`idealseg prepare`), once, so that every run reads the
    same normalised volumes, splits and spacings instead of re-reading the source. The arguments come
    in the command line's order, `prepare(source, SRC, OUT)`; the phantom has no SRC:
    `prepare("phantom", out=OUT)`.

    Args:
        source: The kind of source: "ssl4mis", "acdc", "nifti" or "phantom".
        src: The source folder; None for the phantom, which is generated.
        out: The dataset folder to write (new, or one idealseg wrote, with `overwrite=True`).
        **options: The command line's options as Python values: `overwrite`, `patients`, `seed`,
            `normalization`, `label_map` (`{205: 1}` or "205:1"), `classes`, `val`, `test`,
            `spacing_from`, `patient_regex`, `unlabeled` (a folder of scans joined as unlabelled
            training cases, e.g. another centre's) and `unlabeled_scale_from` (a run whose scale
            search sets the multiple of each such scan's header spacing it is stored at).

    Returns:
        The dataset folder `out`.

    Raises:
        IdealsegError: A source that cannot be read (the message names the file), an output folder
            that is not idealseg's to replace, or the arguments in the old order (OUT before SRC). A
            value of the wrong type or out of range is an `InvalidValue`, also a `ValueError`.
    """
    return _prepare(source, src, out, scale_chooser=scale_chooser, **options)


def train(dataset: str | Path, out: str | Path, **options: Any) -> Path:
    """Pre-train then fine-tune (`idealseg train`) into `out`.

    Args:
        dataset: A dataset folder made by `prepare`.
        out: The folder for the two runs (`pretrain/` and `finetune/`).
        **options: Any `RunConfig` field plus `profile`, `method`, `pretrain_method`, `skip_pretrain`,
            `resume` and `overwrite`, as on the command line (`labeled="ssl4mis:7"`, `profile="cpu"`, ...).

    Returns:
        The fine-tuning run folder, `out/finetune`: what `evaluate`, `load` and `predict_files` take.

    Raises:
        IdealsegError: An unreadable dataset, an option no stage reads, an output folder that exists
            without `resume` or `overwrite`, or training that diverged.
    """
    _train(dataset, out, **options)
    return Path(out) / "finetune"


def pretrain(dataset: str | Path, out: str | Path, **options: Any) -> Path:
    """Contrastive pre-training of the encoder (`idealseg pretrain`), for `finetune(init=...)`.

    Args:
        dataset: A dataset folder made by `prepare`.
        out: The run folder to write.
        **options: Any `RunConfig` field plus `profile`, `method`, `resume` and `overwrite`.

    Returns:
        The run folder `out`.

    Raises:
        IdealsegError: As `train`.
    """
    run_stage("pretrain", dataset, out, **options)
    return Path(out)


def finetune(dataset: str | Path, out: str | Path, **options: Any) -> Path:
    """Fine-tuning with any method (`idealseg finetune`), from scratch or from a pre-training run.

    Args:
        dataset: A dataset folder made by `prepare`.
        out: The run folder to write.
        **options: Any `RunConfig` field plus `profile`, `method`, `resume` and `overwrite`;
            `init=` a pre-training run folder starts from its encoder.

    Returns:
        The run folder `out`.

    Raises:
        IdealsegError: As `train`.
    """
    run_stage("finetune", dataset, out, **options)
    return Path(out)


def evaluate(run: str | Path, split: str = "val", **options: Any) -> dict:
    """Dice, HD95 and ASD per volume and class (`idealseg evaluate`).

    Args:
        run: A fine-tuning run folder (or a `train` folder).
        split: "train", "val" or "test".
        **options: `dataset` (another dataset of the same classes), `checkpoint` ("last" or "best"),
            `out`, `flip_tta`, `device`, `largest_component` and `amp` (None: as the run chose),
            `scale_search`.

    Returns:
        The summary it also writes to `summary.json`: per class and for the foreground mean, the
        mean, std and count of undefined values of each metric over volumes.

    Raises:
        IdealsegError: Not a fine-tuning run, a split without labelled cases, a dataset of other
            classes, or an output folder that is not an evaluation's.
    """
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

    if classes is not None and (not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes)):
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
    """A trained run, loaded once, that segments volumes in memory (what `predict` does per file).

    Made by `load`. It holds the run's `Predictor` (network, geometry, precision and post-processing)
    and the intensity normalisation the run's training data had, which a raw volume needs first.

    Attributes:
        predictor: The run's predictor, with the post-processing its validation chose.
        normalization: The run's intensity normalisation ("percentile" or "minmax").
    """

    predictor: Predictor
    normalization: str

    def segment(self, volume: np.ndarray | nib.Nifti1Image | str | Path, flip_tta: bool = False, *,
                spacing: tuple[float, ...] | None = None, largest_component: bool | None = None,
                scale_search: bool = True, with_quality: bool = False, out: str | Path | None = None,
                overwrite: bool = False) -> np.ndarray | tuple[np.ndarray, float]:
        """Segment a volume of raw intensities, normalised first as the run's training data was.

        Args:
            volume: [Z, H, W] raw intensities, slices along the first axis; [C, Z, H, W] for a run trained
                on scans of C > 1 channels (each channel is normalised on its own). Or what a user holds:
                a nibabel image or the path of a .nii/.nii.gz file (for a run of C > 1 channels, its
                channel 0 file, the others beside it), read exactly as `predict` reads it: its header's
                spacing and slice axis, its checks; the mask then comes back in its geometry.
            flip_tta: Average the network over horizontal and vertical flips (three passes).
            spacing: In mm, (Z, H, W) or in-plane (H, W). A model in physical space (`spacing_mm` > 0)
                needs it to see the anatomy at its training scale; a spacing far from the model's is
                warned about, as the header of a scan may be in the wrong unit.
            largest_component: Keep each class's largest connected region (removes stray false
                positives); None: as the run's validation chose.
            scale_search: As `predict`, segment at the multiple of `spacing` the model is most
                confident at, for scans whose anatomy is not at the size the spacing implies.
            with_quality: Also return the mask's quality score, as `predict` writes it: the mean
                confidence over what the mask calls foreground, 0 to 1; the lower, the likelier a
                poor mask (rank scans by it to know which to check first).
            out: For an image or path: also write the mask there (a .nii.gz path), as `predict` writes
                it (the input's affine and header), never over an existing file unless `overwrite`,
                and then only over a mask idealseg wrote.
            overwrite: Replace an existing mask at `out`.

        Returns:
            Labels, uint8 [Z, H, W] for an array; for an image or path, in the input's own axis order
            and shape. The value is the index in `classes`. With `with_quality`, the pair (labels,
            quality score).

        Raises:
            InvalidValue: A volume that is not a finite [Z, H, W] array, an invalid spacing or flag,
                or no spacing for a model in physical space (also a `ValueError`).
            IdealsegError: A spacing at which the slices would be absurdly large; an image or file
                predict would refuse (one line naming it), or an `out` it would not write.
        """
        if isinstance(volume, (str, Path, nib.Nifti1Image)):
            return self._segment_scan(volume, flip_tta, spacing=spacing, largest_component=largest_component,
                                      scale_search=scale_search, with_quality=with_quality, out=out,
                                      overwrite=overwrite)
        if out is not None:
            raise InvalidValue("out: a mask is written only for an image or path, whose header it takes; for an "
                               "array, save the mask with the header you have")
        volume = _volume(volume, self.cfg.in_channels)
        flip_tta = checks.flag(flip_tta, "flip_tta")
        if spacing is not None:
            spacing = _in_plane(spacing)
            suspect = spacing_mismatch(spacing, self.spacing_mm)
            if suspect:
                warnings.warn(f"volume: {suspect}", stacklevel=2)
        elif self.spacing_mm:
            raise InvalidValue(f"this model works at {self.spacing_mm:g} mm: pass the volume's spacing "
                               "(segment(volume, spacing=(z, y, x)))")
        image = normalize_channels(volume, self.normalization)
        largest_component = checks.optional_flag(largest_component, "largest_component")
        scale_search = checks.flag(scale_search, "scale_search")
        if largest_component is None:
            largest_component = self.predictor.largest_component
        predictor = self.predictor.with_choices(flip_tta=flip_tta, scale_search=scale_search,
                                                largest_component=largest_component)
        result = predictor.segment(image, spacing)
        return (result.mask, result.quality) if checks.flag(with_quality, "with_quality") else result.mask

    def _segment_scan(self, source: nib.Nifti1Image | str | Path, flip_tta: bool, *, spacing: Any,
                      largest_component: bool | None, scale_search: bool, with_quality: bool,
                      out: str | Path | None, overwrite: bool) -> np.ndarray | tuple[np.ndarray, float]:
        """`segment` of a nibabel image or a NIfTI path: read, checked, normalised and written as `predict`
        does (inference/predict.py), the mask returned in the input's geometry."""
        if spacing is not None:
            raise InvalidValue("spacing: an image or path has its spacing in its header; pass spacing only "
                               "with an array")
        overwrite = checks.flag(overwrite, "overwrite")
        scans = _read_scans(source, self.cfg.in_channels)
        scan, name = scans[0]
        check_scan_spacing(scan, name, self.spacing_mm)
        target = None
        if out is not None:
            target = checks.output_path(out, "out")
            if not target.name.endswith((".nii", ".nii.gz")):
                raise InvalidValue(f"out {target}: give the mask's file name, ending .nii.gz")
            if isinstance(source, (str, Path)):
                plan_outputs([name], target, overwrite)  # predict's rules for one named mask
            else:
                check_mask_folder(target.parent)
                check_target(target, overwrite)
        image = stack_channels([s for s, _ in scans], self.normalization)
        predictor = self.predictor.with_choices(
            flip_tta=checks.flag(flip_tta, "flip_tta"), scale_search=checks.flag(scale_search, "scale_search"),
            largest_component=_or(checks.optional_flag(largest_component, "largest_component"),
                                  self.predictor.largest_component))
        result = predictor.segment(image, in_plane(scan.spacing))
        if target is not None:
            write_mask(result.mask, scan, target)
        mask = mask_in_source(result.mask, scan)
        return (mask, result.quality) if checks.flag(with_quality, "with_quality") else mask

    @property
    def cfg(self) -> RunConfig:
        """The run's configuration, as it was trained."""
        return self.predictor.cfg

    @property
    def spacing_mm(self) -> float:
        """The in-plane spacing the model works at, in mm; 0 where it knows no physical size."""
        return float(self.predictor.target_spacing)

    @property
    def classes(self) -> list[str]:
        """Class names, background first, as the run was trained on (index = label value in a mask)."""
        return list(self.cfg.classes)


def _or(value: bool | None, default: bool) -> bool:
    return default if value is None else value


def _read_scans(source: nib.Nifti1Image | str | Path, channels: int) -> list[tuple[NiftiScan, Path]]:
    """The scan(s) of an image or path, each with the name its messages give, read as `predict` reads
    them: a path's channel files (CASE_0000 and its siblings, for a run of several channels), checked
    on one grid."""
    if isinstance(source, nib.Nifti1Image):
        if channels > 1:
            raise InvalidValue(f"this run reads {channels} channels: give the path of the scan's channel 0 file "
                               "(its other channels beside it), or a [C, Z, H, W] array")
        name = Path(source.get_filename() or "the image given")
        return [(scan_of_image(source, name), name)]
    path = checks.path(source, "volume")
    if path.is_dir():
        raise InputError(path, "is a folder; segment takes one scan (predict_files takes a folder)")
    paths = scan_cases([path], channels, path)[0]
    scans = [read_scan(p) for p in paths]
    check_same_grid(scans, paths)
    return list(zip(scans, paths, strict=True))


def _volume(volume: Any, channels: int = 1) -> np.ndarray:
    """A [Z, H, W] array of finite intensities ([channels, Z, H, W] where channels > 1), or the error that
    says what it is instead."""
    try:
        array = np.asarray(volume, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidValue(f"volume: expected a [Z, H, W] array of numbers, got {type(volume).__name__}") from None
    shaped = array.ndim == 3 if channels == 1 else (array.ndim == 4 and array.shape[0] == channels)
    if not shaped or min(array.shape) == 0:
        form = "[Z, H, W]" if channels == 1 else f"[{channels}, Z, H, W] ({channels} channels)"
        raise InvalidValue(f"expected a {form} volume, got shape {array.shape}")
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
    """Load a run once for segmentation in memory (`Segmenter.segment`), as `predict` would use it.

    Args:
        run: A fine-tuning run folder (or a `train` folder holding `finetune/`).
        checkpoint: "last" or "best" (the best validation Dice; a run that never validated has none).
        device: "cpu", "cuda" or "cuda:N"; None: CUDA where there is one.

    Returns:
        A `Segmenter` with the run's network, geometry, precision, post-processing and normalisation.

    Raises:
        IdealsegError: Not a fine-tuning run folder, a missing or unreadable checkpoint, or an
            invalid argument (an `InvalidValue`, also a `ValueError`).
    """
    run, _, checkpoint, device = checked_run_arguments(run, "val", checkpoint, device)
    predictor = Predictor.from_run(run, checkpoint, device)
    return Segmenter(predictor, run_normalization(predictor.cfg))


def predict_files(run: str | Path, src: str | Path, out: str | Path, checkpoint: str = "last", flip_tta: bool = False,
                  device: str | None = None, **options: Any) -> list[Path]:
    """Segment NIfTI files (`idealseg predict`); every scan is read and checked before any mask is
    written, so a bad file in a folder leaves no half-done output.

    Args:
        run: A fine-tuning run folder (or a `train` folder).
        src: A .nii/.nii.gz file or a folder of them (files named as masks, `_seg`/`_gt`, are skipped).
        out: A folder for the masks, or a .nii.gz name for a single input.
        checkpoint: "last" or "best".
        flip_tta: Average the network over flips.
        device: "cpu", "cuda" or "cuda:N"; None: CUDA where there is one.
        **options: `normalization` (None: the run's), `overwrite`, `largest_component` (None: as the
            run's validation chose), `scale_search` (default on for a model in physical space) and
            `ensemble` (a list of other runs of the same experiment, folds or seeds, whose
            probabilities are averaged with `run`'s).

    Returns:
        The paths of the masks written, each `<scan>_seg.nii.gz` with its input's affine, header,
        shape and orientation; a quality table `idealseg_quality.csv` beside them.

    Raises:
        IdealsegError: An unreadable or implausible scan (named), a mask that would overwrite an
            input or an existing file without `overwrite`, or a run folder that is not a fine-tuning run.
    """
    run, _, checkpoint, device = checked_run_arguments(run, "val", checkpoint, device)
    src, out = checks.path(src, "INPUT"), checks.output_path(out, "OUT")
    for name in ("overwrite", "largest_component", "scale_search"):
        if options.get(name) is not None:
            checks.flag(options[name], f"--{name.replace('_', '-')}")
    ensemble = options.get("ensemble")
    if ensemble is not None:
        if isinstance(ensemble, (str, Path)) or not isinstance(ensemble, (list, tuple)):
            raise InvalidValue(f"ensemble {ensemble!r}: expected a list of run folders")
        options["ensemble"] = [checks.path(r, "--ensemble") for r in ensemble]
    return _predict_files(run, src, out, checkpoint, checks.flag(flip_tta, "--tta"), device, **options)
