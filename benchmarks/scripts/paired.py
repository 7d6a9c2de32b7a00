"""Paired Dice difference between two sets of benchmark cells, over the volumes and seeds they share.

    python benchmarks/scripts/paired.py A_CELL [A_CELL ...] -- B_CELL [B_CELL ...]

Each CELL is a benchmark cell folder (cells/NAME_BUDGET_seedS, with run/eval_SPLIT/per_volume.csv);
the i-th cell of A is paired with the i-th of B (the same seed), volume by volume. Prints each
side's mean foreground Dice and the mean of B minus A with its standard error: how cells of two
benchmark YAMLs compare (the report of one YAML pairs its own methods only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from idealseg.benchmark.statistics import folder_volume_dice


def cell_dice(folder: Path) -> dict[str, float]:
    """Per-volume mean foreground Dice of one cell folder."""
    result = json.loads((folder / "result.json").read_text())
    return folder_volume_dice(folder, result["split"])  # this folder's, not its namesake's under cells/


def main(argv: list[str]) -> None:
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    a_cells, b_cells = [Path(p) for p in argv[:cut]], [Path(p) for p in argv[cut + 1 :]]
    if len(a_cells) != len(b_cells) or not a_cells:
        sys.exit("paired.py: give as many cells after -- as before it")
    diffs, a_all, b_all = [], [], []
    for a_cell, b_cell in zip(a_cells, b_cells, strict=True):
        a, b = cell_dice(a_cell), cell_dice(b_cell)
        shared = sorted(set(a) & set(b))
        diffs += [b[c] - a[c] for c in shared]
        a_all += [a[c] for c in shared]
        b_all += [b[c] for c in shared]
        print(f"{a_cell.name} {np.mean([a[c] for c in shared]):.3f}  {b_cell.name} "
              f"{np.mean([b[c] for c in shared]):.3f}  ({len(shared)} volumes)")
    d = np.array(diffs)
    print(f"A {np.mean(a_all):.3f}, B {np.mean(b_all):.3f}; B minus A {d.mean():+.3f} ± "
          f"{d.std(ddof=1) / np.sqrt(len(d)):.3f} (standard error, {len(d)} pairs)")


if __name__ == "__main__":
    main(sys.argv[1:])
