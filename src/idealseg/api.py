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

from pathlib import Path
from typing import Any

from idealseg import checks
from idealseg.checks import InvalidValue
from idealseg.data.prepare import prepare as _prepare
from idealseg.evaluation.evaluate import checked_run_arguments, evaluate_run
from idealseg.inference.predict import predict_files as _predict_files
from idealseg.inference.predict import (
    run_normalization,
)
from idealseg.inference.predictor import Predictor
from idealseg.inference.rescale import scale_chooser
from idealseg.inference.segmenter import Segmenter
from idealseg.pipeline import run_stage
from idealseg.pipeline import train as _train

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
