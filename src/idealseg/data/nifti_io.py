"""NIfTI reading with one-line errors, and the axis convention shared by import and prediction.

A 3D array is sliced along its axis of largest spacing (the through-plane axis of a stack of 2D
slices) and stored as [Z, H, W]; `axes` records which source axis became Z, H and W so a mask
can be written back in the input's own orientation.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from idealseg.errors import InputError

MAX_SLICE_PIXELS = 4096 * 4096  # larger in-plane slices are refused before their pixels are read


def load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], nib.Nifti1Image]:
    """Return (array, affine, zooms, image); any read failure names the file."""
    if path.is_symlink() and not path.exists():
        raise InputError(path, "broken or looping symbolic link")
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        img = nib.load(str(path))
        shape = img.shape
        if len(shape) >= 2 and sorted(shape[:3])[-1] * sorted(shape[:3])[-2] > MAX_SLICE_PIXELS:
            raise InputError(path, f"image of shape {shape} has slices over 4096x4096 pixels; crop or resample it")
        data = np.asarray(img.dataobj)
    except InputError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(path, f"unreadable NIfTI ({type(exc).__name__}: {exc})") from None
    if data.dtype.names is not None or np.iscomplexobj(data):
        kind = "an RGB (colour) image" if data.dtype.names is not None else "a complex-valued image"
        raise InputError(path, f"{kind} ({data.dtype}); expected one real-valued channel of intensities")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InputError(path, "affine contains NaN or Inf values")
    raw = _raw_pixdim(path)[1 : min(data.ndim, 3) + 1]
    if not (np.isfinite(raw).all() and (raw > 0).all()):
        raise InputError(path, f"invalid voxel spacing {tuple(float(v) for v in raw)} in the header (must be > 0)")
    zooms = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    return data, affine, zooms, img


def _raw_pixdim(path: Path) -> np.ndarray:
    """pixdim as stored: nibabel silently replaces zero spacings with 1 when it checks a header."""
    with nib.openers.ImageOpener(str(path)) as f:
        header = nib.Nifti1Header.from_fileobj(f, check=False)
    return np.asarray(header["pixdim"], dtype=np.float64)


def slicing_axes(shape: tuple[int, ...], zooms: tuple[float, ...], path: Path) -> tuple[int, int, int]:
    """Choose (Z, H, W) source axes: Z is the axis of largest spacing (ties: the last axis)."""
    if len(shape) == 2:
        return (2, 1, 0)  # a single slice is promoted to [1, H, W] by `to_zhw`
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(path, f"expected a 2D or 3D image, got {len(shape)}D shape {tuple(shape)}")
    z = max(range(3), key=lambda a: (round(zooms[a], 4), a))
    h, w = [a for a in (2, 1, 0) if a != z][:2]
    return (z, h, w)


def to_zhw(data: np.ndarray, axes: tuple[int, int, int]) -> np.ndarray:
    """Source array -> [Z, H, W] with the given axes (a 2D source becomes one slice)."""
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    return np.transpose(data, axes)


def from_zhw(volume: np.ndarray, axes: tuple[int, int, int], ndim: int = 3) -> np.ndarray:
    """Inverse of `to_zhw`: a [Z, H, W] mask back into the source array's axis order."""
    out = np.transpose(volume, np.argsort(axes))
    return out[:, :, 0] if ndim == 2 else out


def spacing_zhw(zooms: tuple[float, ...], axes: tuple[int, int, int], path: Path) -> tuple[float, float, float]:
    """Voxel spacing in (Z, H, W) order; zero, negative or non-finite spacing is an error."""
    zooms = tuple(zooms) + (1.0,) * (3 - len(zooms))
    spacing = tuple(float(zooms[a]) for a in axes)
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(path, f"invalid voxel spacing {zooms[:3]} in the header (must be > 0)")
    return spacing  # type: ignore[return-value]
