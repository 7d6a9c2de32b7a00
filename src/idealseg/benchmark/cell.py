"""One cell of the matrix (a method's row x a label budget x a seed) and its result row (result.json).

A result.json is read back by every report, possibly years after it ran and perhaps edited by hand:
it is checked once as it is read, so that a damaged one is named in one line instead of failing as a
KeyError deep inside the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from idealseg.benchmark.spec import MethodEntry, cell_dir
from idealseg.errors import InputError

# Entries every result.json has had since the first benchmark; the others may be absent (None).
RESULT_KEYS = ("name", "method", "labeled", "seed", "steps", "pretrain_seconds", "metrics")


@dataclass(frozen=True)
class Cell:
    """A row of `methods:` run on one label budget with one seed."""

    entry: MethodEntry
    labeled: str
    seed: int

    def folder(self, root: Path) -> Path:
        """Where the cell's run, evaluation and result.json live under the results folder `root`."""
        return cell_dir(root, self.entry.name, self.labeled, self.seed)


@dataclass(frozen=True)
class CellResult:
    """A finished cell, as its result.json records it (fields in the file's order). `metrics` maps
    class (and "mean") to metric to {mean, ...}; `dice` (per-volume mean Dice, for the paired table)
    is filled by the report from the cell's evaluation and never written to result.json."""

    name: str
    method: str
    labeled: str
    seed: int
    steps: int
    pretrain_seconds: float
    metrics: dict[str, dict[str, dict[str, Any]]]
    pretrain: str | None = None
    profile: str | None = None
    split: str | None = None
    finetune_seconds: float | None = None
    train_seconds: float | None = None
    eval_seconds: float = 0
    budget_seconds: float | None = None
    unit: str | None = None
    machine: str | None = None
    finished: str | None = None
    dice: dict[str, float] | None = field(default=None, compare=False)

    def folder(self, root: Path) -> Path:
        """The cell folder this result names under the results folder `root`."""
        return cell_dir(root, self.name, self.labeled, self.seed)

    def to_json(self) -> dict[str, Any]:
        """result.json's object, its keys in the order the benchmark has always written them."""
        record = asdict(self)
        return {key: record[key] for key in JSON_ORDER}


JSON_ORDER = ("name", "method", "pretrain", "labeled", "seed", "profile", "split", "steps", "pretrain_seconds",
              "finetune_seconds", "train_seconds", "eval_seconds", "budget_seconds", "unit", "metrics", "machine",
              "finished")
_KNOWN = {f.name for f in fields(CellResult)} - {"dice"}


def read_result(path: Path) -> CellResult:
    """One cell's result.json, or one line naming it when it is truncated or edited out of shape."""
    try:
        result = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        why = f"not valid JSON ({exc})"
    else:
        if not isinstance(result, dict):
            why = f"expected a JSON object, found {type(result).__name__}"
        elif missing := [k for k in RESULT_KEYS if k not in result]:
            why = f"missing {', '.join(missing)}"
        elif not isinstance(result["metrics"], dict) or not all(
                isinstance(stats, dict) and all(isinstance(v, dict) and "mean" in v for v in stats.values())
                for stats in result["metrics"].values()):
            why = "metrics is not a map of class to metric to {mean, ...}"
        else:
            return CellResult(**{k: v for k, v in result.items() if k in _KNOWN})
    raise InputError(path, f"damaged result.json: {why}; delete it to run the cell again")
