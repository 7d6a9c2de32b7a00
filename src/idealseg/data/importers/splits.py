"""Patient-level train/val/test assignment for importers whose source has no split of its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from idealseg.errors import IdealsegError


def _parse(spec: str | None, patients: list[str], taken: set[str], seed: int) -> list[str]:
    """`spec` is a percentage ("20%"), a count ("4"), ids ("p1,p2") or a file of ids ("@f")."""
    if not spec:
        return []
    if spec.startswith("@"):
        try:
            ids = Path(spec[1:]).read_text().split()
        except (OSError, UnicodeDecodeError) as exc:
            raise IdealsegError(f"{spec[1:]}: cannot read this split file ({getattr(exc, 'strerror', None) or exc})")\
                from None
    elif spec.endswith("%") or spec.isdigit():
        free = [p for p in patients if p not in taken]
        try:
            share = float(spec[:-1]) if spec.endswith("%") else None
        except ValueError:
            share = None
        if spec.endswith("%") and (share is None or not 0 <= share <= 100):
            raise IdealsegError(f"split {spec!r}: a percentage must be a number from 0 to 100, e.g. 20%")
        n = round(len(patients) * share / 100) if share is not None else int(spec)
        if n > len(free):
            raise IdealsegError(f"split of {spec} asks for {n} patients but {len(free)} are left")
        order = np.random.default_rng(seed).permutation(len(free))
        return sorted(free[i] for i in order[:n])
    else:
        ids = [s for s in spec.split(",") if s]
    unknown = sorted(set(ids) - set(patients))
    if unknown:
        raise IdealsegError(f"split names unknown patients: {unknown[:5]}")
    return ids


def assign_splits(patients: list[str], val: str | None, test: str | None, seed: int) -> dict[str, str]:
    """Map each patient to a split; a patient can be in only one."""
    split = dict.fromkeys(patients, "train")
    test_ids = _parse(test, patients, set(), seed + 1)
    for p in test_ids:
        split[p] = "test"
    for p in _parse(val, patients, set(test_ids), seed):
        if split[p] == "test":
            raise IdealsegError(f"patient {p} is in both the val and the test split")
        split[p] = "val"
    if patients and "train" not in split.values():
        raise IdealsegError(f"--val {val} and --test {test} take all {len(patients)} labelled patients; "
                            "leave at least one for training")
    return split
