"""results.csv, report.md and the figures, rewritten from the finished cells after each one."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np

from idealseg.atomic import atomic_file
from idealseg.benchmark.calibration import compute_spent, finetune_steps
from idealseg.benchmark.cell import CellResult, read_result
from idealseg.benchmark.spec import BenchmarkSpec, clocked_options, stage_options
from idealseg.benchmark.statistics import paired_table, table_header, validation_rows, volume_dice


def collect(root: Path) -> list[CellResult]:
    """Every finished cell's result.json under `root`, in folder order."""
    return [read_result(p) for p in sorted((root / "cells").glob("*/result.json"))]


def write_results(root: Path, spec: BenchmarkSpec) -> None:
    """results.csv (one row per cell) and report.md (methods x budgets, Dice and HD95)."""
    results = collect(root)
    if not results:
        return
    rows = []
    for r in results:
        row = {k: getattr(r, k) for k in ("name", "method", "pretrain", "labeled", "seed", "profile", "split",
                                          "steps", "budget_seconds", "pretrain_seconds", "finetune_seconds",
                                          "train_seconds", "unit", "machine", "finished")}
        for cls, stats in r.metrics.items():
            for m, v in stats.items():
                row[f"{cls}_{m}"] = v["mean"]
        rows.append(row)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_file(root / "results.csv") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_file(root / "report.md") as f:
        f.write(report_markdown([replace(r, dice=volume_dice(root, r)) for r in results], spec,
                                _repriced(root, spec, results)))
    try:
        from idealseg.evaluation.figures import dice_vs_compute, dice_vs_labels

        dice_vs_labels([r.to_json() for r in results], root / "dice_vs_labels.png")
        curves = validation_curves(root, spec, results)
        if any(c["minutes"] for c in curves):
            dice_vs_compute(curves, root / "dice_vs_compute.png")
    except ImportError:
        pass

def validation_curves(root: Path, spec: BenchmarkSpec, results: list[CellResult]) -> list[dict]:
    """Each cell's validation Dice against the training compute spent to reach it, pre-training included.

    A final number hides whether a method was still climbing when its budget ran out; at equal
    compute, a method with a dearer step (two decoders, an unlabelled batch) stops earlier.
    With a calibrated `budget` the x axis is calibrated compute, otherwise measured seconds.
    """
    budget = spec.budget
    curves = []
    for r in results:
        log = r.folder(root) / "run" / "log.csv"
        if not log.exists():
            continue
        rows = validation_rows(log)
        if budget:
            pre = budget.pretrain_seconds if r.pretrain else 0.0
            steps = [int(row["step"]) for row in rows]
            entry = spec.entry(r.name)
            spent = entry and compute_spent(root, "finetune", r.method, entry.options,
                                            stage_options(spec, entry, "finetune"), r.steps, steps)
            per_step = (budget.total_seconds - pre) / max(1, r.steps)
            seconds = [pre + t for t in spent] if spent else [pre + step * per_step for step in steps]
        else:
            seconds = [r.pretrain_seconds + float(row["time"]) for row in rows]
        curves.append({"name": r.name, "labeled": r.labeled, "seed": r.seed,
                       "minutes": [t / 60 for t in seconds], "dice": [float(row["val_dice"]) for row in rows]})
    order = [e.name for e in spec.methods]
    return sorted(curves, key=lambda c: (_index(spec.labeled, c["labeled"]), _index(order, c["name"]), c["seed"]))

def _index(items: list, item) -> int:
    """Position in the config (the order the reader set), unknown entries last."""
    return items.index(item) if item in items else len(items)

def _repriced(root: Path, spec: BenchmarkSpec, results: list[CellResult]) -> list[str]:
    """The cells that ran with other steps than their budget buys now (the calibration's pricing
    changed after they ran), as 'name, budget, seed: ran N steps, buys M now'."""
    if not spec.budget or not (root / "calibration.json").exists():
        return []
    found = []
    for r in results:
        entry = spec.entry(r.name)
        if entry and r.steps != (now := finetune_steps(root, spec, entry)):
            found.append(f"{r.name}, {r.labeled}, seed {r.seed}: ran {r.steps} steps, buys {now} now")
    return found

def _allowance(spec: BenchmarkSpec) -> str:
    """What each cell was given, as the report's first line says it: calibrated compute (equal
    compute), a fixed number of fine-tuning steps (equal steps: the converged regime, the gpu
    protocol), or a clock; and its pre-training's steps or clock."""
    budget = spec.budget
    if budget:
        return f"each cell {_duration(budget.total_seconds)} of calibrated training compute, pre-training included"
    finetune = [clocked_options(spec, entry, "finetune") for entry in spec.methods]
    pretrain = [clocked_options(spec, entry, "pretrain") for entry in spec.methods if entry.pretrain]
    if any(opts.get("time_budget") for opts in finetune):
        how = "each cell a wall-clock budget (the profile's unless its row sets one)"
    else:
        steps = [opts["iterations"] for opts in finetune]
        common = max(set(steps), key=steps.count)
        how = f"each cell {common} fine-tuning steps" + (", or its row's own" if len(set(steps)) > 1 else "")
    if pretrain and any(opts.get("time_budget") for opts in pretrain):
        how += ", pre-training (where a row has it) on the clock"
    elif pretrain:
        counts = " or ".join(sorted({str(opts["iterations"]) for opts in pretrain}))
        how += f", pre-training (where a row has it) {counts} steps"
    return how

def report_markdown(results: list[CellResult], spec: BenchmarkSpec, repriced: list[str] = ()) -> str:
    """report.md: methods as rows, label budgets as columns (mean Dice ± seed spread / HD95),
    then the paired differences to the reference method, the cells whose budget buys other steps
    now than they ran (`repriced`), and the machines and wall time."""
    budgets = [b for b in spec.labeled if any(r.labeled == b for r in results)]
    names = [e.name for e in spec.methods if any(r.name == e.name for r in results)]
    unit = results[0].unit
    how = _allowance(spec)
    lines = [f"Mean foreground Dice / HD95 ({unit}) on the {spec.split} split, profile {spec.profile}, "
             f"mean over seeds (± their standard deviation where a cell has several); {how}. "
             "Steps and measured seconds per cell: results.csv.", "",
             *table_header(budgets)]
    for name in names:
        cells = []
        for b in budgets:
            rs = [r for r in results if r.name == name and r.labeled == b]
            if not rs:
                cells.append("-")
                continue
            dices = np.array([r.metrics["mean"]["dice"]["mean"] for r in rs])
            hds = [r.metrics["mean"]["hd95"]["mean"] for r in rs if r.metrics["mean"]["hd95"]["mean"] is not None]
            hd = f"{sum(hds) / len(hds):.2f}" if hds else "n/a"
            spread = f" (± {dices.std(ddof=1):.3f}, {len(rs)} seeds)" if len(rs) > 1 else ""
            cells.append(f"{dices.mean():.3f}{spread} / {hd}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += paired_table(results, spec, budgets, names)
    if repriced:
        lines += ["", "Cells kept as they ran, whose budget buys other steps now (the calibration's pricing "
                  "changed after they ran): " + "; ".join(repriced) + "."]
    machines = sorted({r.machine for r in results})
    # a shared pre-training is counted once (cells that used the same run recorded the same seconds)
    pretrain = {(r.pretrain, r.seed, r.pretrain_seconds) for r in results if r.pretrain}
    wall = sum(r.finetune_seconds + r.eval_seconds for r in results) + sum(p[2] for p in pretrain)
    lines += ["", f"Machine: {'; '.join(machines)}. Measured wall time of these {len(results)} cells: "
              f"{wall / 3600:.1f} h (training and evaluation; each shared pre-training once). Per-class numbers: "
              "results.csv. Validation Dice against training compute, pre-training included: dice_vs_compute.png."]
    return "\n".join(lines) + "\n"

def _duration(seconds: float) -> str:
    """'28 min' for a CPU budget, '100 s' for a short GPU one (rounding 100 s to '2 min' misleads)."""
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds:.0f} s"
