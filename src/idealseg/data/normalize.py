"""Per-volume intensity normalisation, shared by import and prediction so both see the same scale."""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("percentile", "minmax")


def normalize_volume(
    image: np.ndarray, method: str = "percentile", lower: float = 0.5, upper: float = 99.5
) -> np.ndarray:
    """Map a volume to [0, 1]: clip at percentiles (robust to bright outliers), or plain min-max.

    `minmax` reproduces the SSL4MIS pre-processing exactly; `percentile` is the default because a
    single hot voxel otherwise compresses the whole contrast range.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {NORMALIZATIONS}")
    image = image.astype(np.float32)
    if method == "percentile":
        lo, hi = np.percentile(image, [lower, upper])
        image = np.clip(image, lo, hi)
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    return ((image - lo) / (hi - lo)).astype(np.float32)
