"""A run's report: evaluation table plus figures, in RUN/report/."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from idealseg.atomic import atomic_file
from idealseg.data.dataset import Dataset
from idealseg.evaluation.evaluate import markdown_table
from idealseg.evaluation.figures import overlay, training_curves
from idealseg.evaluation.predictor import Predictor
from idealseg.evaluation.spacing import check_spacing
from idealseg.ownership import check_writable, record_written
from idealseg.runfolder.folder import resolve_run


def write_report(run: str | Path, split: str = "test", cases: int = 2) -> Path:
    """Training curves (pre-training too, when present), overlays of `cases` volumes, the table."""
    run_dir = resolve_run(run)
    out = run_dir / "report"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor = Predictor.from_run(run_dir, device=device)  # the post-processing evaluate scored with
    cfg = predictor.cfg
    ds = Dataset(cfg.dataset)
    shown = [c for c in ds.split(split) if c.labeled][:cases]
    written = {"report.md", "pretrain_curves.png", "finetune_curves.png", *(f"overlay_{c.id}.png" for c in shown)}
    check_writable(run_dir, [f"report/{name}" for name in sorted(written)])
    record_written(run_dir, [out / name for name in written])  # before the writes: a kill leaves them ours
    parts = ["# idealseg report", ""]
    pre = run_dir.parent / "pretrain" / "log.csv"
    if pre.exists():
        training_curves(pre, out / "pretrain_curves.png", "pre-training")
        parts += ["![pre-training](pretrain_curves.png)", ""]
    if (run_dir / "log.csv").exists():
        training_curves(run_dir / "log.csv", out / "finetune_curves.png", "fine-tuning")
        parts += ["![fine-tuning](finetune_curves.png)", ""]
    summary_path = run_dir / f"eval_{split}" / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        parts += [f"## {split} split ({summary['volumes']} volumes)", "", markdown_table(summary)]
    check_spacing(cfg, ds.root, shown)
    for entry in shown:
        case = ds.load(entry.id)
        mask = predictor.predict(case.image, case.spacing)
        name = f"overlay_{entry.id}.png"
        overlay(case.image, case.label, mask, out / name, title=entry.id)
        parts += [f"![{entry.id}]({name})", ""]
    with atomic_file(out / "report.md") as f:
        f.write("\n".join(parts))
    return out
