"""A run's report: what the run was, its training curves, its evaluation tables and overlays, in RUN/report/.

Any fine-tuning run gets one (`idealseg report RUN`), not only the demo's: a reader checks a run by its
curves and by looking at masks, before trusting a table.
"""

from __future__ import annotations

import glob
import json
import warnings
from pathlib import Path

import torch

from idealseg.atomic import atomic_file
from idealseg.data.channels import as_channels
from idealseg.data.dataset import Dataset
from idealseg.errors import IdealsegError
from idealseg.evaluation.evaluate import markdown_table, trained_steps
from idealseg.evaluation.figures import overlay, training_curves
from idealseg.inference.predictor import Predictor
from idealseg.inference.spacing import check_spacing
from idealseg.ownership import check_writable, owned, read_manifest, record_written
from idealseg.runfolder.folder import resolve_run
from idealseg.writer_lock import writer_lock

SPLITS = ("test", "val", "train")  # the first with labelled volumes is shown when no split is asked for


def write_report(run: str | Path, split: str | None = None, cases: int = 2, device: str | None = None) -> Path:
    """Write RUN/report/report.md with its figures and return that folder.

    The overlays show `cases` labelled volumes of `split` (default: the test split, else validation,
    else training) as `evaluate` scores them (the run's own post-processing). Evaluation tables come
    from the run's `eval_*` folders, so the report never re-scores anything.
    """
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 0:
        raise IdealsegError(f"cases: expected a whole number >= 0, got {cases!r}")
    run_dir = resolve_run(run)
    with writer_lock(run_dir, purpose="report"):  # it writes into the run folder and its manifest
        return _write_locked(run_dir, split, cases, device)


def _write_locked(run_dir: Path, split: str | None, cases: int, device: str | None) -> Path:
    """write_report's work, under the run folder's lock."""
    out = run_dir / "report"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = Predictor.from_run(run_dir, device=device)  # the post-processing evaluate scored with
    cfg = predictor.cfg
    ds = Dataset(cfg.dataset, fold=cfg.fold_index)
    asked, split = split, _split(ds, split)
    shown = [c for c in ds.split(split) if c.labeled][:cases]
    if asked and cases and not shown:
        raise IdealsegError(f"{ds.root}: the {split} split holds no labelled volume to show; choose another "
                            f"split ({', '.join(s for s in SPLITS if s != split)}) or --cases 0")
    written = {"report.md", "pretrain_curves.png", "finetune_curves.png", *(f"overlay_{c.id}.png" for c in shown)}
    check_writable(run_dir, [f"report/{name}" for name in sorted(written)])
    record_written(run_dir, [out / name for name in written])  # before the writes: a kill leaves them ours
    parts = ["# idealseg report", "", *_about(run_dir, cfg), ""]
    pre = pretraining_log(cfg)
    if pre is not None:
        training_curves(pre, out / "pretrain_curves.png", "pre-training")
        parts += ["![pre-training](pretrain_curves.png)", ""]
    if (run_dir / "log.csv").exists():
        training_curves(run_dir / "log.csv", out / "finetune_curves.png", "fine-tuning")
        parts += ["![fine-tuning](finetune_curves.png)", ""]
    for name, summary in evaluations(run_dir):
        parts += [f"## {name[5:]} split ({summary['volumes']} volumes)", "", markdown_table(summary),
                  *_stale(summary, trained_steps(run_dir), name), ""]
    check_spacing(cfg, ds.root, shown)
    if shown:
        parts += [f"## Overlays ({split} split)", ""]
    for entry in shown:
        case = ds.load(entry.id)
        mask = predictor.predict(case.image, case.spacing)
        name = f"overlay_{entry.id}.png"
        overlay(as_channels(case.image)[0], case.label, mask, out / name, title=entry.id, classes=list(cfg.classes))
        parts += [f"![{entry.id}]({name})", ""]
    with atomic_file(out / "report.md") as f:
        f.write("\n".join(parts))
    _remove_old_figures(run_dir, out, parts)
    return out


def _remove_old_figures(run_dir: Path, out: Path, parts: list[str]) -> None:
    """Figures an earlier report wrote that this one does not show (fewer overlays, no pre-training):
    removed, so the folder holds one report; only files the run's manifest records as idealseg's."""
    shown = "\n".join(parts)
    recorded = set((read_manifest(run_dir) or {}).get("written") or [])
    for path in out.glob("*.png"):
        if f"({path.name})" not in shown and f"report/{glob.escape(path.name)}" in recorded:
            path.unlink(missing_ok=True)


def pretraining_log(cfg) -> Path | None:
    """The log.csv of the pre-training this run started from (its `init`: a run folder or its
    encoder.pt), when that is an idealseg run folder; None for a run trained from scratch (a sibling
    folder named `pretrain` is not this run's pre-training unless `init` names it)."""
    if not cfg.init:
        return None
    init = Path(cfg.init)
    folder = init.parent if init.suffix == ".pt" else init
    if not owned(folder, "run") and owned(folder / "pretrain", "run"):
        folder = folder / "pretrain"  # a `train` folder named as init (load_encoder accepts it)
    log = folder / "log.csv"
    return log if owned(folder, "run") and log.is_file() else None


def _stale(summary: dict, steps: int | None, name: str) -> list[str]:
    """A line under a table scored on weights the run has replaced since (evaluated while it trained)."""
    if "trained_steps" not in summary or summary["trained_steps"] == steps:  # (an evaluation that predates the
        return []                                                             # record cannot be judged)
    when = "while the run was training" if summary.get("trained_steps") is None else \
        f"after {summary['trained_steps']} steps"
    warnings.warn(f"{name}: scored {when}; the run has trained {steps} steps since: run `idealseg evaluate` "
                  "again", stacklevel=3)
    return ["", f"Scored {when}, on weights the run has since replaced ({steps} steps): run `idealseg evaluate` "
                "again."]


def evaluations(run_dir: Path) -> list[tuple[str, dict]]:
    """(folder name, summary) of each evaluation idealseg wrote in the run folder (its manifest says
    so); a user's `eval_*` folder is not idealseg's evaluation, and a summary that cannot be read as
    one is skipped with a line naming it."""
    found = []
    for folder in sorted(p for p in run_dir.glob("eval_*") if p.is_dir() and owned(p, "evaluation")):
        path = folder / "summary.json"
        try:
            summary = json.loads(path.read_text())
            markdown_table(summary)
            int(summary["volumes"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            warnings.warn(f"{path}: not a readable evaluation summary; left out of the report", stacklevel=3)
            continue
        found.append((folder.name, summary))
    return found


def _split(ds: Dataset, split: str | None) -> str:
    """The asked split, checked; or the first of test, val, train with a labelled volume to show."""
    if split is not None:
        if split not in SPLITS:
            raise IdealsegError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        return split
    return next((s for s in SPLITS if any(c.labeled for c in ds.split(s))), "train")


def _about(run_dir: Path, cfg) -> list[str]:
    """One line on what the run was: method, steps, labelled budget, best validation Dice."""
    line = f"Run `{run_dir}`: method {cfg.method}, labelled {cfg.labeled}, seed {cfg.seed}"
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return [line + " (not finished: no summary.json)."]
    best = summary.get("best_val_dice", -1.0)
    done = f", {summary.get('steps', '?')} steps"
    return [line + done + (f", best validation Dice {best:.4f}." if best >= 0 else ", never validated.")]
