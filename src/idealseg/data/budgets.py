"""Label budgets: which training slices carry labels in a semi-supervised run.

Forms: a patient count (`7`), a fraction of training patients (`10%`), the exact SSL4MIS subsets
(`ssl4mis:7` = the first 136 slices of train_slices.list), `all`, or a file of patient ids
(`@ids.txt`). Selection is at patient level, seeded, and only ever from the train split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idealseg.data.dataset import Dataset
from idealseg.errors import IdealsegError

# SSL4MIS `patients_to_slices` for ACDC: labelled patients -> leading slices of train_slices.list.
SSL4MIS_SLICES = {1: 32, 3: 68, 7: 136, 14: 256, 21: 396, 28: 512, 35: 664, 70: 1312}


@dataclass
class Budget:
    """The outcome of a budget: labelled patients, and labelled (case, slice) pairs when slice-exact."""

    spec: str
    patients: list[str]
    slices: list[tuple[str, int]] | None = None  # set only for ssl4mis:N

    def describe(self) -> str:
        """One line for `idealseg info`: the spec and which patients (and slices) it selected."""
        n = f"{len(self.slices)} slices of " if self.slices is not None else ""
        return f"--labeled {self.spec}: {n}{len(self.patients)} patients: {', '.join(self.patients)}"


def train_patients(dataset: Dataset) -> list[str]:
    """Training patients that have labels, sorted (the order a seed permutes)."""
    return sorted({c.patient for c in dataset.split("train") if c.labeled})


def select_budget(dataset: Dataset, spec: str | int, seed: int = 0) -> Budget:
    """The labelled patients (and slices) a label budget `spec` selects, seeded, from the train split only."""
    spec = str(spec).strip()
    pool = train_patients(dataset)
    if not pool:
        raise IdealsegError(f"{dataset.root}: no labelled training cases (a dataset of images alone can be "
                            "pre-trained on; fine-tuning needs labels)")
    if spec == "all":
        return Budget(spec, pool)
    if spec.startswith("ssl4mis:"):
        return _ssl4mis(dataset, spec)
    if spec.startswith("@"):
        path = Path(spec[1:])
        ids = read_id_file(path)
        outside = sorted(set(ids) - set(pool))
        if outside:
            raise IdealsegError(
                f"{path}: patients {outside[:5]} are not labelled training patients of {dataset.root}"
            )
        return Budget(spec, sorted(set(ids)))
    try:
        share = float(spec[:-1]) if spec.endswith("%") else None
        if share is not None and not 0 < share <= 100:
            raise ValueError
        n = round(len(pool) * share / 100) if share is not None else int(spec)
    except ValueError:
        raise IdealsegError(
            f"--labeled {spec!r}: expected a count (7), a percentage above 0 up to 100 (10%), ssl4mis:N, all or @file"
        ) from None
    if spec.endswith("%"):
        n = max(n, 1)
    if n < 1:
        raise IdealsegError(f"--labeled {spec}: at least 1 labelled patient is needed "
                            f"(the train split has {len(pool)})")
    if n > len(pool):
        raise IdealsegError(f"--labeled {spec}: asks for {n} patients but the train split has {len(pool)}")
    order = np.random.default_rng(seed).permutation(len(pool))
    return Budget(spec, sorted(pool[i] for i in order[:n]))


def read_id_file(path: Path) -> list[str]:
    """The patient ids of an `@file` budget: whitespace-separated, `#` starts a comment. A file that
    names none would give a run without labels, so it is refused here, naming the file."""
    if not path.is_file():
        raise IdealsegError(f"{path}: label budget file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise IdealsegError(f"{path}: unreadable label budget file ({exc})") from None
    ids = [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]
    if not ids:
        raise IdealsegError(f"{path}: label budget file names no patient (one id a line; # starts a comment)")
    return ids


def _ssl4mis(dataset: Dataset, spec: str) -> Budget:
    order = dataset.info.get("slice_order")
    if not order:
        raise IdealsegError(f"--labeled {spec}: {dataset.root} was not imported from SSL4MIS lists")
    try:
        n_patients = int(spec.split(":", 1)[1])
        n_slices = SSL4MIS_SLICES[n_patients]
    except (ValueError, KeyError):
        raise IdealsegError(f"--labeled {spec}: known SSL4MIS budgets are {sorted(SSL4MIS_SLICES)}") from None
    if n_slices > len(order):
        raise IdealsegError(f"--labeled {spec}: needs {n_slices} slices, dataset lists {len(order)}")
    slices = [(s.split(":")[0], int(s.split(":")[1])) for s in order[:n_slices]]
    patients = sorted({dataset.by_id[c].patient for c, _ in slices})
    return Budget(spec, patients, slices)
