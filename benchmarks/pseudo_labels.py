"""The pseudo-label diagnostics of benchmark cells at their last validation point, as a markdown table.

    python benchmarks/pseudo_labels.py CELL [CELL ...]

Each CELL is a benchmark cell folder (cells/NAME_BUDGET_seedS, with run/log.csv). Training logs,
at every validation point, the Dice of each network's hard prediction on the unlabelled training
slices against their labels (`pl_dice_model`, `pl_dice_student`, `pl_dice_teacher`, or one per
stream) and the share of pixels two networks disagree on (`pl_disagree`): a diagnostic no loss
reads. Whether a method's pseudo-labels are better than what the plain U-Net already predicts on
the same slices is what decides if the unlabelled half of its steps can teach anything, so the
tables of docs/benchmarks.md that compare them are printed by this script, not copied by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from idealseg.benchmark.statistics import validation_rows

DIAGNOSTIC = "pl_"


def last_validation(log: Path) -> dict[str, str]:
    """The last row of a training log that has a validation Dice (the point the cell ends on)."""
    rows = validation_rows(log)
    if not rows:
        raise ValueError(f"{log}: no validation point logged")
    return rows[-1]


def table(cells: list[Path]) -> str:
    """One row per cell: steps, validation Dice and every pseudo-label column, in the logs' order."""
    rows = {cell.name: last_validation(cell / "run" / "log.csv") for cell in cells}
    columns: list[str] = []
    for row in rows.values():
        columns += [c for c in row if c.startswith(DIAGNOSTIC) and c not in columns]
    head = ["cell", "step", "val_dice", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        values = [name, row["step"], *(_fmt(row.get(c, "")) for c in head[2:])]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def _fmt(value: str | None) -> str:
    return f"{float(value):.3f}" if value else ""


def main(argv: list[str]) -> None:
    if not argv or argv[0] in {"-h", "--help"}:
        sys.exit(__doc__)
    missing = [p for p in argv if not (Path(p) / "run" / "log.csv").is_file()]
    if missing:
        sys.exit(f"pseudo_labels.py: {missing[0]}: no run/log.csv (not a benchmark cell folder)")
    try:
        print(table([Path(p) for p in argv]))
    except ValueError as err:
        sys.exit(f"pseudo_labels.py: {err}")


if __name__ == "__main__":
    main(sys.argv[1:])
