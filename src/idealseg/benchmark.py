"""`benchmark`: methods x label budgets x seeds on one dataset and profile, at equal budget.

Cells run one after another and are resumable: a cell whose evaluation summary exists is
skipped, an interrupted one resumes from its last checkpoint. One pre-training serves every
cell that names the same pre-training, but each cell's reported time counts the pre-training
it used; with `equal_budget`, cells without pre-training get its time added to fine-tuning.
"""

from __future__ import annotations

import csv
import datetime
import json
import platform
import re
from pathlib import Path
from typing import Any

import torch

from idealseg.atomic import atomic_file
from idealseg.config import PROFILES, read_yaml
from idealseg.errors import IdealsegError
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.pipeline import run_stage

REQUIRED = ("dataset", "methods", "labeled")


def load_benchmark(path: str | Path) -> dict[str, Any]:
    """Read and check a benchmark YAML (see benchmarks/acdc_cpu.yaml)."""
    spec = read_yaml(path)
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise IdealsegError(f"{path}: missing {missing}")
    spec.setdefault("profile", "cpu")
    spec.setdefault("seeds", [0])
    spec.setdefault("split", "val")
    spec.setdefault("equal_budget", True)
    spec.setdefault("options", {})
    if spec["profile"] not in PROFILES:
        raise IdealsegError(f"{path}: unknown profile {spec['profile']!r}")
    for cell in spec["methods"]:
        if "name" not in cell or "method" not in cell:
            raise IdealsegError(f"{path}: each entry of methods needs a name and a method")
    spec["labeled"] = [str(b) for b in spec["labeled"]]
    return spec


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def _pretrain_key(cell: dict) -> str | None:
    if not cell.get("pretrain"):
        return None
    opts = cell.get("pretrain_options", {})
    return _slug(cell["pretrain"] + "".join(f"_{k}-{v}" for k, v in sorted(opts.items())))


def run_benchmark(path: str | Path, out: str | Path | None = None, only: list[str] | None = None) -> Path:
    spec = load_benchmark(path)
    root = Path(out or spec.get("out") or Path(path).with_suffix(""))
    root.mkdir(parents=True, exist_ok=True)
    if spec.get("prepare") and not (Path(spec["dataset"]) / "dataset.json").exists():
        from idealseg.data.prepare import prepare

        source, *src = str(spec["prepare"]).split()
        prepare(source, spec["dataset"], src[0] if src else None)
    profile, options = spec["profile"], dict(spec["options"])
    pre_budget = PROFILES[profile]["pretrain"].get("time_budget", 0)
    for labeled in spec["labeled"]:
        for cell in spec["methods"]:
            if only and cell["name"] not in only:
                continue
            for seed in spec["seeds"]:
                _run_cell(root, spec, cell, labeled, seed, profile, options, pre_budget)
    write_results(root, spec)
    return root


def _run_cell(root, spec, cell, labeled, seed, profile, options, pre_budget) -> None:
    cell_dir = root / "cells" / _slug(f"{cell['name']}_{labeled}_seed{seed}")
    if (cell_dir / "result.json").exists():
        return
    pre_seconds, init = 0.0, None
    key = _pretrain_key(cell)
    if key:
        pre_dir = root / "pretrain" / f"{key}_seed{seed}"
        if not (pre_dir / "summary.json").exists():
            run_stage("pretrain", spec["dataset"], pre_dir, profile=profile, resume=True, seed=seed,
                      method=cell["pretrain"], **{**options, **cell.get("pretrain_options", {})})
        pre_seconds = json.loads((pre_dir / "summary.json").read_text())["seconds"]
        init = str(pre_dir)
    ft_opts = {**options, **cell.get("options", {})}
    if spec["equal_budget"] and not key and PROFILES[profile]["finetune"].get("time_budget"):
        ft_opts["time_budget"] = PROFILES[profile]["finetune"]["time_budget"] + pre_budget
    ft_dir = cell_dir / "run"
    if not (ft_dir / "summary.json").exists():
        run_stage("finetune", spec["dataset"], ft_dir, profile=profile, resume=True, seed=seed, labeled=labeled,
                  method=cell["method"], init=init, **ft_opts)
    train = json.loads((ft_dir / "summary.json").read_text())
    ev = evaluate_run(ft_dir, spec["split"])
    result = {
        "name": cell["name"], "method": cell["method"], "pretrain": cell.get("pretrain"), "labeled": labeled,
        "seed": seed, "profile": profile, "split": spec["split"], "steps": train["steps"],
        "pretrain_seconds": pre_seconds, "finetune_seconds": train["seconds"],
        "train_seconds": round(pre_seconds + train["seconds"], 1), "eval_seconds": ev["seconds"],
        "unit": ev["unit"], "metrics": ev["classes"], "machine": machine(), "finished": _now(),
    }
    with atomic_file(cell_dir / "result.json") as f:
        json.dump(result, f, indent=1)


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def collect(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*/result.json"))]


def write_results(root: Path, spec: dict) -> None:
    """results.csv (one row per cell) and report.md (methods x budgets, Dice and HD95)."""
    results = collect(root)
    if not results:
        return
    rows = []
    for r in results:
        row = {k: r[k] for k in ("name", "method", "pretrain", "labeled", "seed", "profile", "split", "steps",
                                 "pretrain_seconds", "finetune_seconds", "train_seconds", "unit", "machine",
                                 "finished")}
        for cls, stats in r["metrics"].items():
            for m, v in stats.items():
                row[f"{cls}_{m}"] = v["mean"]
        rows.append(row)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_file(root / "results.csv") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_file(root / "report.md") as f:
        f.write(report_markdown(results, spec))
    try:
        from idealseg.evaluation.figures import dice_vs_labels

        dice_vs_labels(results, root / "dice_vs_labels.png")
    except ImportError:
        pass


def report_markdown(results: list[dict], spec: dict) -> str:
    budgets = [b for b in spec["labeled"] if any(r["labeled"] == b for r in results)]
    names = [c["name"] for c in spec["methods"] if any(r["name"] == c["name"] for r in results)]
    unit = results[0]["unit"]
    lines = [f"Mean foreground Dice / HD95 ({unit}) on the {spec['split']} split, profile {spec['profile']}, "
             f"mean over seeds; time = training seconds incl. pre-training.", "",
             "| method | " + " | ".join(f"{b} labelled" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for name in names:
        cells = []
        for b in budgets:
            rs = [r for r in results if r["name"] == name and r["labeled"] == b]
            if not rs:
                cells.append("-")
                continue
            dice = sum(r["metrics"]["mean"]["dice"]["mean"] for r in rs) / len(rs)
            hds = [r["metrics"]["mean"]["hd95"]["mean"] for r in rs if r["metrics"]["mean"]["hd95"]["mean"] is not None]
            hd = f"{sum(hds) / len(hds):.2f}" if hds else "n/a"
            secs = sum(r["train_seconds"] for r in rs) / len(rs)
            cells.append(f"{dice:.3f} / {hd} ({secs / 60:.0f} min)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    machines = sorted({r["machine"] for r in results})
    lines += ["", f"Machine: {', '.join(machines)}. Per-class numbers: results.csv."]
    return "\n".join(lines) + "\n"
