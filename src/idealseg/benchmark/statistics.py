"""Paired differences between methods over the same volumes and seeds, with standard errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from idealseg.benchmark.cell import CellResult
from idealseg.benchmark.spec import BenchmarkSpec


def validation_rows(log_csv: Path) -> list[dict[str, str]]:
    """The rows of a training log.csv that carry a validation point (the others log losses only)."""
    with open(log_csv, newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("val_dice")]


def volume_dice(root: Path, result: CellResult) -> dict[str, float]:
    """Mean foreground Dice of each volume a cell of the benchmark at `root` was evaluated on."""
    return folder_volume_dice(result.folder(root), result.split)

def folder_volume_dice(folder: Path, split: str) -> dict[str, float]:
    """Mean foreground Dice of each volume, from the per_volume.csv of the cell folder given (which
    may lie outside its benchmark's cells/, as a superseded cell does)."""
    path = folder / "run" / f"eval_{split}" / "per_volume.csv"
    if not path.exists():
        return {}
    by_case: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by_case.setdefault(row["case"], []).append(float(row["dice"]))
    return {case: float(np.nanmean(v)) for case, v in by_case.items()}

def paired_table(results: list[CellResult], spec: BenchmarkSpec, budgets: list[str], names: list[str]) -> list[str]:
    """Each method's mean Dice minus the reference method's, paired over the same volumes and seeds.

    Two methods scored on the same 20 volumes differ much less from volume to volume than either
    does on its own, so the paired standard error says which gaps in the table are more than the
    volumes' spread (it cannot say how much a different training seed would move a cell).
    """
    reference = spec.reference or next((e.name for e in spec.methods if e.method == "ideal"), None)
    if reference not in names or not all(r.dice is not None for r in results):
        return []
    lines = ["", f"Mean Dice minus {reference}'s, paired over the same volumes and seeds: mean ± standard error "
             "(n pairs).", "", *table_header(budgets)]
    dice = {(r.name, r.labeled, r.seed): r.dice for r in results}
    for name in names:
        if name == reference:
            continue
        cells = []
        for b in budgets:
            diffs = []
            for seed in {s for n, lab, s in dice if n == name and lab == b}:
                own, ref = dice[(name, b, seed)], dice.get((reference, b, seed), {})
                diffs += [own[case] - ref[case] for case in own if case in ref]
            d = np.array(diffs)
            cells.append(f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f} ({len(d)})" if len(d) > 1 else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines

def table_header(budgets: list[str]) -> list[str]:
    """The markdown header of a methods x label budgets table."""
    return ["| method | " + " | ".join(f"{b} labelled" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
