"""The pseudo-label diagnostics of benchmark cells at their last validation point, as a markdown table.

    python benchmarks/scripts/pseudo_labels.py CELL [CELL ...]

Each CELL is a benchmark cell folder (cells/NAME_BUDGET_seedS, with run/log.csv). Training logs,
at every validation point, the Dice of each network's hard prediction on the unlabelled training
slices against their labels (`pl_dice_model`, `pl_dice_student`, `pl_dice_teacher`, or one per
stream) and the share of pixels two networks disagree on (`pl_disagree`): a diagnostic no loss
reads. Whether a method's pseudo-labels are better than what the plain U-Net already predicts on
the same slices is what decides if the unlabelled half of its steps can teach anything, so the
tables of docs/benchmarks.md that compare them are printed by this script, not copied by hand.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from idealseg.benchmark.statistics import validation_rows

DIAGNOSTIC = "pl_"


def last_validation(log: Path) -> dict[str, str]:
    """The last row of a training log that has a validation Dice (the point the cell ends on)."""
    rows = validation_rows(log)
    if not rows:
        raise ValueError(f"{log}: no validation point logged")
    row = rows[-1]
    for key in ("val_dice", *(k for k in row if k.startswith(DIAGNOSTIC))):
        try:
            float(row[key] or 0)
        except ValueError:
            raise ValueError(f"{log}: {key} of step {row.get('step')} is not a number: {row[key]!r}") from None
    return row


def table(rows: dict[str, dict[str, str]]) -> str:
    """One row per cell (name -> its last validation row): steps, validation Dice and every
    pseudo-label column, in the logs' order."""
    columns: list[str] = []
    for row in rows.values():
        columns += [c for c in row if c.startswith(DIAGNOSTIC) and c not in columns]
    head = ["cell", "step", "val_dice", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        values = [name, row.get("step", ""), *(_fmt(row.get(c, "")) for c in head[2:])]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def _fmt(value: str | None) -> str:
    return f"{float(value):.3f}" if value else ""


def fail(message: str) -> None:
    """Bad input: one line naming the file, exit code 2, as the idealseg CLI does."""
    print(f"pseudo_labels.py: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in {"-h", "--help"}:
        sys.exit(__doc__)
    rows = {}
    for cell in map(Path, argv):
        log = cell / "run" / "log.csv"
        if not log.is_file():
            fail(f"{cell}: no run/log.csv (not a benchmark cell folder)")
        try:
            rows[cell.name] = last_validation(log)
        except (ValueError, csv.Error) as err:
            fail(str(err) if str(err).startswith(str(log)) else f"{log}: unreadable ({err})")
    print(table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
