"""`info`: what a dataset folder holds, and what a label budget would select from it."""

from __future__ import annotations

import numpy as np

from idealseg import checks
from idealseg.data.budgets import select_budget
from idealseg.data.dataset import Dataset
from idealseg.data.fingerprint import describe, fingerprint, load_plan


def dataset_summary(dataset: Dataset, labeled: str | None = None, seed: int = 0) -> str:
    """The text `idealseg info` prints: classes, splits, spacing, and what a label budget selects."""
    seed = checks.seed(seed)  # before the slow part: a bad seed is refused at once, with or without --labeled
    lines = [f"dataset {dataset.info.get('name')} ({dataset.root}), source {dataset.info.get('source')}"]
    for split in ("train", "val", "test"):
        cases = dataset.split(split)
        patients = {c.patient for c in cases}
        n_lab = sum(c.labeled for c in cases)
        slices = sum(c.shape[0] for c in cases)
        lines.append(
            f"  {split:5s}: {len(cases)} cases ({n_lab} labelled), {len(patients)} patients, {slices} slices"
        )
    counts = np.zeros(dataset.num_classes, dtype=np.int64)
    for c in dataset.cases:
        if c.labeled:
            label = dataset.load(c.id).label
            counts += np.bincount(label.ravel(), minlength=dataset.num_classes)[: dataset.num_classes]
    if any(c.labeled for c in dataset.cases):
        lines.append("  classes (voxels over labelled cases):")
        for i, (name, n) in enumerate(zip(dataset.classes, counts, strict=True)):
            lines.append(f"    {i} {name}: {n}")
    else:  # prepared from images alone: fine for pretrain, which never reads a label
        lines.append("  classes: none known, no case has a label (pretrain can use it; finetune needs labels)")
    spacings = np.array([c.spacing for c in dataset.cases if c.spacing is not None])
    if len(spacings):
        lo, hi = spacings.min(0), spacings.max(0)
        lines.append(
            "  spacing (z, y, x) mm: "
            + ", ".join(f"{a:.2f}-{b:.2f}" for a, b in zip(lo, hi, strict=True))
        )
    else:
        lines.append("  spacing: none stored (distance metrics will be in voxels)")
    lines += describe(fingerprint(dataset), load_plan(dataset))
    if labeled is not None:
        lines.append("  " + select_budget(dataset, labeled, seed).describe())
    return "\n".join(lines)
