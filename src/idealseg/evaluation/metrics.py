"""Per-volume, per-class Dice, HD95 and symmetric ASD (MONAI's implementations), with spacing.

What is scored, as nnU-Net scores it (METHOD.md section 4 in spirit): voxels the reference leaves
unannotated (IGNORE_LABEL, nnU-Net's `ignore` label) are taken out of both masks first. Then, per class:
- in the reference and the prediction: Dice, HD95 and ASD ("ok");
- in the reference only: Dice 0, distances undefined (NaN), counted separately ("one_empty");
- in the prediction only: a false positive, Dice 0, distances undefined ("false_positive");
- in neither: the class is absent from the volume and there is nothing to score ("absent"): Dice and
  distances NaN, the row kept in per_volume.csv but left out of every mean and of checkpoint choice
  (nnU-Net's NaN). Scoring it Dice 1 and HD95 0, the rule before, lifted the mean of every volume by a
  class that a dataset.json names but its labels never hold. Where every class is in every reference
  (ACDC) nothing changes: no volume has an absent class.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from idealseg.labels import IGNORE_LABEL

ABSENT = "absent"  # status of a class in neither the reference nor the prediction of a volume


def dice_score(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty (an absent class: nothing to score)."""
    p, r = pred.astype(bool), ref.astype(bool)
    total = p.sum() + r.sum()
    return float("nan") if total == 0 else float(2 * (p & r).sum() / total)


def annotated(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`pred` and `ref` with the reference's unannotated voxels (IGNORE_LABEL) made background in both,
    so that no class is scored there, found or not (returned as they are where there are none)."""
    unannotated = np.asarray(ref) == IGNORE_LABEL
    if not unannotated.any():
        return pred, ref
    return np.where(unannotated, 0, pred), np.where(unannotated, 0, ref)


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing) -> tuple[float, float]:
    """(HD95, ASD) between two non-empty binary masks of any dimension, in spacing units."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    p = torch.from_numpy(pred.astype(bool))[None, None]
    r = torch.from_numpy(ref.astype(bool))[None, None]
    sp = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p, r, percentile=95, spacing=sp)
        asd = compute_average_surface_distance(p, r, symmetric=True, spacing=sp)
    return float(hd.item()), float(asd.item())


def volume_metrics(pred: np.ndarray, ref: np.ndarray, num_classes: int, spacing=None) -> dict[int, dict]:
    """{class: {dice, hd95, asd, status, pred_volume, ref_volume}} for classes 1..C-1 of one volume.

    status: "ok", "one_empty", "false_positive" or "absent" (module docstring). Volumes are in ml
    where spacing is in mm, over annotated voxels only.
    """
    unit = 1.0 if spacing is None else float(np.prod(spacing)) / 1000.0
    spacing = spacing if spacing is not None else (1.0,) * pred.ndim
    pred, ref = annotated(pred, ref)
    out = {}
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        row = {"dice": dice_score(p, r), "pred_volume": float(p.sum() * unit), "ref_volume": float(r.sum() * unit)}
        if not r.any():
            row.update(hd95=float("nan"), asd=float("nan"), status="false_positive" if p.any() else ABSENT)
        elif not p.any():
            row.update(hd95=float("nan"), asd=float("nan"), status="one_empty")
        else:
            hd, asd = surface_distances(p, r, spacing)
            row.update(hd95=hd, asd=asd, status="ok")
        out[c] = row
    return out


def class_dice(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> list[float]:
    """Dice of each foreground class 1..C-1 over the annotated voxels; NaN where the class is absent."""
    pred, ref = annotated(pred, ref)
    return [dice_score(pred == c, ref == c) for c in range(1, num_classes)]


def mean_foreground_dice(pred: np.ndarray, ref: np.ndarray, num_classes: int, absent: float | None = None) -> float:
    """Mean Dice over the foreground classes of two label volumes (what validation tracks): over the
    classes present in either (NaN when none is), or with an absent class scored `absent` (two
    predictions that both lack a class agree on it: quality.py's agreement passes 1)."""
    values = np.array(class_dice(pred, ref, num_classes))
    if absent is not None:
        values = np.where(np.isnan(values), absent, values)
    return mean_present(values)


def mean_present(values) -> float:
    """The mean of the scored values (NaN, an absent class or a volume without any, is not scored);
    NaN when there are none: the one rule for every mean over classes and volumes of Dice."""
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else float("nan")
