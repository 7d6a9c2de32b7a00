"""Per-volume intensity normalisation, shared by import and prediction so both see the same scale."""

from __future__ import annotations

import numpy as np

from idealseg.errors import IdealsegError

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
    check_volume(image)
    image = image.astype(np.float32)
    if method == "percentile":
        lo, hi = np.percentile(image, [lower, upper])
        image = np.clip(image, lo, hi)
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    return ((image - lo) / (hi - lo)).astype(np.float32)


def normalize_channels(image: np.ndarray, method: str = "percentile") -> np.ndarray:
    """`normalize_volume` of each channel on its own: a [Z, H, W] image as it is, a [C, Z, H, W] one
    channel by channel, as a T2 and an ADC map share no intensity scale."""
    if image.ndim != 4:
        return normalize_volume(image, method)
    return np.stack([normalize_volume(channel, method) for channel in image])


def check_volume(image: np.ndarray, what: str = "volume") -> None:
    """Refuse, in one line, a volume with nothing to segment (a 0-length axis) or with NaN/Inf voxels:
    the first breaks the percentiles with an IndexError, the second turns the whole volume into NaN
    and the mask into silent background. Importers and predict replace NaN first, naming the file
    (nifti_io.finite_image); this guards the Python API's arrays."""
    if image.size == 0:
        raise IdealsegError(f"empty {what} (shape {tuple(image.shape)}): nothing to segment")
    bad = int(np.count_nonzero(~np.isfinite(image))) if np.issubdtype(image.dtype, np.inexact) else 0
    if bad:
        raise IdealsegError(f"{what} of shape {tuple(image.shape)} has {bad} NaN or Inf voxels of {image.size}; "
                            "replace them (e.g. with its minimum) before segmenting it")
