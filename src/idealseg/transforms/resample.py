"""The one resampling of slices to a size or a spacing (training's slice store, inference, its
probabilities back onto a scan's grid) and the guards that keep a header's absurd spacing an error
rather than an allocation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MAX_SIDE = 4096  # a slice resampled to the target spacing larger than this is an error, not an allocation


def resampled_size(shape: tuple[int, int], spacing: tuple[float, float], target: float) -> tuple[int, int]:
    """(H, W) of a slice of `shape` at `spacing` (mm) once resampled to `target` mm (callers check
    MAX_SIDE, so that a header's absurd spacing is an error rather than an allocation)."""
    return tuple(max(1, round(n * s / target)) for n, s in zip(shape, spacing, strict=True))  # type: ignore[return-value]


def oversize(shape: tuple[int, int], spacing: tuple[float, float], target: float) -> str | None:
    """Why a slice of `shape` at `spacing` (mm) cannot be resampled to `target` mm (larger than
    MAX_SIDE on a side: a header's absurd spacing, or a target far too fine), or None when it can.
    Training, inference and predict's check of every scan all ask here before they allocate."""
    grid = resampled_size(shape, spacing, target)
    if max(grid) <= MAX_SIDE:
        return None
    return (f"at {target:g} mm its {shape[0]} x {shape[1]} slices of {spacing[0]:g} x {spacing[1]:g} mm would be "
            f"{grid[0]} x {grid[1]} pixels, more than {MAX_SIDE} on a side")


def resample(slices: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, *size]: bilinear for images and probabilities, nearest for labels.

    The one resampling of slices: training's slice store (to the input size, or to the target
    spacing), inference and its probabilities back to a scan's own grid all come through here, so
    that a model is served slices interpolated exactly as it was trained on. A slice already of
    `size` is returned as it is (no interpolation, not even an identity one).
    """
    if tuple(slices.shape[-2:]) == tuple(size):
        return slices
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(slices, size=size, mode=mode, **kwargs)


def centre(slices, size: int | tuple[int, int]):
    """Centre-crop or zero-pad the last two axes of [..., H, W] (a tensor or an array) to `size`
    (square when one number)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    shape = (*slices.shape[:-2], *size)
    out = slices.new_zeros(shape) if isinstance(slices, torch.Tensor) else np.zeros(shape, slices.dtype)
    src, dst = [], []
    for have, want in zip(slices.shape[-2:], size, strict=True):
        if have >= want:
            start = (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            start = (want - have) // 2
            src.append(slice(0, have))
            dst.append(slice(start, start + have))
    out[..., dst[0], dst[1]] = slices[..., src[0], src[1]]
    return out
