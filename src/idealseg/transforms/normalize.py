"""Per-volume intensity normalisation, shared by import and prediction so both see the same scale.

The statistics (percentiles, minimum, maximum) are taken inside the scan's foreground box
(`foreground_box`): a scan zero-padded, or padded with any constant, to a wider field of view is
normalised as the scan itself, as nnU-Net crops to the non-zero box before it normalises. A scan with
no constant face is normalised over the whole volume, as it always was.
"""

from __future__ import annotations

import numpy as np

from idealseg.errors import IdealsegError

Box = tuple[slice, ...]

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
    box = foreground_box(image)
    if method == "percentile":
        lo, hi = np.percentile(image[box], [lower, upper])
        image = np.clip(image, lo, hi)
    lo, hi = float(image[box].min()), float(image[box].max())
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    if image[box].size != image.size:  # the padding outside the box maps into [0, 1] as well
        image = np.clip(image, lo, hi)
    return ((image - lo) / (hi - lo)).astype(np.float32)


def border_value(image: np.ndarray) -> float | None:
    """The constant a volume is padded with: the value of its faces that hold one value only (the most
    common such value where they disagree), or None where no face is constant (nothing to strip)."""
    values = []
    for axis in range(image.ndim):
        for index in (0, -1):
            face = np.take(image, index, axis=axis)
            if face.size and np.all(face == face.flat[0]):
                values.append(face.flat[0].item())
    if not values:
        return None
    return max(values, key=values.count)


def foreground_box(image: np.ndarray) -> Box:
    """The bounding box of the voxels that differ from the border constant (`border_value`): the scan
    without its padding, whatever side and constant it was padded with; the whole volume where no
    face is constant or every voxel is the constant."""
    whole = tuple(slice(0, n) for n in image.shape)
    value = border_value(image)
    if value is None:
        return whole
    content = image != value
    if not content.any():
        return whole
    box = []
    for axis in range(image.ndim):
        hit = np.flatnonzero(content.any(axis=tuple(a for a in range(image.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


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
