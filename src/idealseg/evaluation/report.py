"""A run's report: what the run was, its training curves, its evaluation tables and overlays, in RUN/report/.

Any fine-tuning run gets one (`idealseg report RUN`), not only the demo's: a reader checks a run by its
curves and by looking at masks, before trusting a table.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from idealseg.atomic import atomic_file
from idealseg.data.channels import as_channels
from idealseg.data.dataset import Dataset
from idealseg.errors import IdealsegError
from idealseg.evaluation.evaluate import markdown_table
from idealseg.evaluation.figures import overlay, training_curves
from idealseg.evaluation.predictor import Predictor
from idealseg.evaluation.spacing import check_spacing
from idealseg.ownership import check_writable, record_written
from idealseg.runfolder.folder import resolve_run

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
    pre = run_dir.parent / "pretrain" / "log.csv"
    if pre.exists():
        training_curves(pre, out / "pretrain_curves.png", "pre-training")
        parts += ["![pre-training](pretrain_curves.png)", ""]
    if (run_dir / "log.csv").exists():
        training_curves(run_dir / "log.csv", out / "finetune_curves.png", "fine-tuning")
        parts += ["![fine-tuning](finetune_curves.png)", ""]
    for summary_path in sorted(run_dir.glob("eval_*/summary.json")):
        summary = json.loads(summary_path.read_text())
        parts += [f"## {summary_path.parent.name[5:]} split ({summary['volumes']} volumes)", "",
                  markdown_table(summary), ""]
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
    return out


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
