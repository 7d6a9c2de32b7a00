"""Per-volume, per-class Dice, HD95 and symmetric ASD (MONAI's implementations), with spacing.

Empty-mask rules (METHOD.md section 4): both empty -> Dice 1, distances 0; exactly one empty ->
Dice 0 and distances undefined (NaN), counted separately and never averaged in as 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def dice_score(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty (nothing to find, nothing found)."""
    p, r = pred.astype(bool), ref.astype(bool)
    total = p.sum() + r.sum()
    return 1.0 if total == 0 else float(2 * (p & r).sum() / total)


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
    """{class: {dice, hd95, asd, status, pred_ml, ref_ml}} for classes 1..C-1 of one volume.

    status: "ok", "both_empty" or "one_empty". Volumes are in ml where spacing is in mm.
    """
    unit = 1.0 if spacing is None else float(np.prod(spacing)) / 1000.0
    spacing = spacing if spacing is not None else (1.0,) * pred.ndim
    out = {}
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        row = {"dice": dice_score(p, r), "pred_volume": float(p.sum() * unit), "ref_volume": float(r.sum() * unit)}
        if not p.any() and not r.any():
            row.update(hd95=0.0, asd=0.0, status="both_empty")
        elif not p.any() or not r.any():
            row.update(hd95=float("nan"), asd=float("nan"), status="one_empty")
        else:
            hd, asd = surface_distances(p, r, spacing)
            row.update(hd95=hd, asd=asd, status="ok")
        out[c] = row
    return out


def mean_foreground_dice(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes of two label volumes (what validation tracks)."""
    return float(np.mean([dice_score(pred == c, ref == c) for c in range(1, num_classes)]))
