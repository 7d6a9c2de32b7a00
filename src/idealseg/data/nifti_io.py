"""NIfTI reading with one-line errors, and the axis convention shared by import and prediction.

A 3D array is sliced along its through-plane axis (the axis of clearly largest spacing; where
spacings tie or nearly tie, the axis with the fewest voxels, as a stack of 2D slices has far fewer
slices than pixels per side; an axis with far fewer voxels than the others is the slice axis even
where its spacing is finer, with a warning) and stored as [Z, H, W]; `axes` records which source axis became Z, H
and W so a mask can be written back in the input's own orientation. Import and predict both call
`slicing_axes`, so a model sees a scan sliced as its training data was.

Voxel spacing comes from the affine nibabel uses for the image's geometry (sform, else qform: the
lengths of its columns), checked against pixdim (where the affine holds only orientation, as in the
ACDC release, pixdim gives the spacing, as ITK reads it) and against a plausible range in
millimetres, so that a header in metres is an error (or, where xyzt_units says metres, a
conversion) rather than a volume resampled to almost nothing and an empty mask.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from idealseg.errors import InputError

MAX_SLICE_PIXELS = 4096 * 4096  # larger in-plane slices are refused before their pixels are read
PLAUSIBLE_MM = (0.05, 50.0)  # voxel spacing of any scan idealseg segments, per axis, in mm
PIXDIM_AGREEMENT = 0.02  # relative difference between the affine's and pixdim's spacing that is only rounding
NEAR_TIE = 1.25  # spacings within this factor of the largest are one tie for the choice of slicing axis
STACK_RATIO = 2  # an axis with at most half of each other axis's voxels is the stack, whatever the spacing
UNIT_TO_MM = {"meter": (1000.0, "metres"), "micron": (0.001, "microns")}  # xyzt_units other than mm
NIFTI_ENDINGS = (".nii.gz", ".nii")


def is_nifti(path: Path) -> bool:
    """Whether a file is named as NIfTI (.nii or .nii.gz): what import, predict and scoring read."""
    return path.name.endswith(NIFTI_ENDINGS)


def nifti_stem(path: Path) -> str:
    """`img_0003` of `img_0003.nii.gz` or `img_0003.nii`: a file's name without its NIfTI ending (a
    name without one is returned whole), the one rule every case and mask name starts from."""
    for ending in NIFTI_ENDINGS:
        if path.name.endswith(ending):
            return path.name[: -len(ending)]
    return path.name


@dataclass(frozen=True)
class NiftiScan:
    """A scan as import and predict see it: read, checked and oriented once, by `read_scan`.

    `data` is float32 in the file's own axis order with NaN and Inf replaced (`finite_image`);
    `zhw` is the same voxels as [Z, H, W] slices; `spacing` is (Z, H, W) in mm; `axes` the source
    axes that became Z, H and W; `img` the nibabel image whose header a mask is written with.
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    axes: tuple[int, int, int]
    img: nib.Nifti1Image

    @property
    def zhw(self) -> np.ndarray:
        """The voxels as [Z, H, W] slices (a view: no copy)."""
        return to_zhw(self.data, self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape in the file's own axis order (what a label's must match)."""
        return tuple(self.data.shape)


def read_scan(path: Path) -> NiftiScan:
    """The scan at `path`, or a one-line error naming it. Every check import and predict make of an
    image is here, so a scan predict accepts is one import would have read the same way: readable,
    one real channel, finite affine, plausible spacing (load_nifti), one 3D volume (not 4D frames),
    sliced along its through-plane axis (slicing_axes) and NaN-free (finite_image)."""
    return _scan(*load_nifti(path), path)


def scan_of_image(img: nib.Nifti1Image, name: Path) -> NiftiScan:
    """A nibabel image already in memory (the API's `segment(img)`) read as `read_scan` reads a file,
    `name` (its file, or a stand-in) naming it in messages."""
    if not isinstance(img, nib.Nifti1Image):
        raise InputError(name, f"a {type(img).__name__}, not a NIfTI image")
    try:
        pixdim = np.asarray(img.header["pixdim"], dtype=np.float64)
        return _scan(*_checked_image(img, name, True, pixdim), name)
    except InputError:
        raise
    except Exception as exc:  # an image whose data cannot be read (a proxy to a file since removed)
        raise InputError(name, f"unreadable NIfTI image ({type(exc).__name__}: {exc})") from None


def _scan(data: np.ndarray, affine: np.ndarray, spacing: tuple[float, ...], img: nib.Nifti1Image,
          path: Path) -> NiftiScan:
    if data.ndim == 4 and data.shape[3] > 1:
        raise InputError(path, f"expected a 2D or 3D image, got 4D shape {data.shape} ({data.shape[3]} "
                               "channels/frames); give one 3D volume")
    check_float32_range(data, img, path)
    axes = slicing_axes(data.shape, spacing, path)
    return NiftiScan(finite_image(data, path), affine, spacing_zhw(spacing, axes, path), axes, img)


def load_nifti(path: Path, check_spacing: bool = True) -> tuple[np.ndarray, np.ndarray, tuple[float, ...],
                                                                 nib.Nifti1Image]:
    """Return (array, affine, spacing in mm per source axis, image); any read failure names the file.
    Images are read with `read_scan`, which adds the slicing; labels come here directly, with
    `check_spacing` False (a label's grid is checked against its image's instead): pixdim as it is."""
    if path.is_symlink() and not path.exists():
        raise InputError(path, "broken or looping symbolic link")
    if path.exists() and not path.is_file():
        raise InputError(path, "not a regular file (a folder, FIFO or device); give a NIfTI file")
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(path, f"unreadable NIfTI ({type(exc).__name__}: {exc})") from None
    return _checked_image(img, path, check_spacing, _raw_pixdim(path))


def _checked_image(img: nib.Nifti1Image, path: Path, check_spacing: bool, pixdim: np.ndarray):
    """(array, affine, spacing, image) of an image opened from `path` (or held in memory), checked as
    `load_nifti` says; `pixdim` as stored, before nibabel's header check replaces zeros."""
    try:
        shape = img.shape
        if len(shape) >= 2 and sorted(shape[:3])[-1] * sorted(shape[:3])[-2] > MAX_SLICE_PIXELS:
            raise InputError(path, f"image of shape {shape} has slices over 4096x4096 pixels; crop or resample it")
        if 0 in shape:
            raise InputError(path, f"empty image (shape {tuple(shape)}): nothing to segment")
        data = _scaled(img)
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
    raw = pixdim[1 : min(data.ndim, 3) + 1]
    if not (np.isfinite(raw).all() and (raw > 0).all()):
        raise InputError(path, f"invalid voxel spacing {tuple(float(v) for v in raw)} in the header (must be > 0)")
    if not check_spacing:
        return data, affine, tuple(float(z) for z in img.header.get_zooms()[: data.ndim]), img
    return data, affine, image_spacing(img, path, data.ndim), img


def _scaled(img: nib.Nifti1Image) -> np.ndarray:
    """The voxels with the header's scl_slope and scl_inter applied in float64 (nibabel may scale in the
    raw type's precision): a huge slope is then seen for what it is, not an overflow to Inf."""
    proxy = img.dataobj
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    if (slope, inter) == (1.0, 0.0) or not hasattr(proxy, "get_unscaled"):
        return np.asarray(proxy)
    return np.asarray(proxy.get_unscaled(), dtype=np.float64) * slope + inter


def check_float32_range(data: np.ndarray, img: nib.Nifti1Image, path: Path) -> None:
    """Intensities are stored and computed in float32: a value beyond its range (a huge scl_slope) would
    become Inf, and then the image's minimum, silently darkening the anatomy. One line instead."""
    if data.dtype.kind != "f" or data.dtype.itemsize <= 4:
        return
    finite = data[np.isfinite(data)]
    limit = float(np.finfo(np.float32).max)
    slope, inter = float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0))
    if finite.size and float(np.abs(finite).max()) > limit:
        raise InputError(path, f"intensities up to {float(np.abs(finite).max()):.3g} exceed float32's range "
                               f"({limit:.3g}); the header's scl_slope is {slope:g}: fix the header's scaling")
    as32 = finite.astype(np.float32)
    if (slope, inter) == (1.0, 0.0) or not finite.size or as32.max() > as32.min():
        return
    raw = np.asarray(img.dataobj.get_unscaled()) if hasattr(img.dataobj, "get_unscaled") else finite
    if raw.max() > raw.min():
        raise InputError(path, f"the header's scaling (scl_slope {slope:g}, scl_inter {inter:g}) leaves no contrast "
                               "in float32 (every voxel the same value): fix the header's scaling")


def _raw_pixdim(path: Path) -> np.ndarray:
    """pixdim as stored: nibabel silently replaces zero spacings with 1 when it checks a header."""
    with nib.openers.ImageOpener(str(path)) as f:
        header = nib.Nifti1Header.from_fileobj(f, check=False)
    return np.asarray(header["pixdim"], dtype=np.float64)


def _mm(values) -> str:
    """'1.5 x 1.5 x 8': spacings as a user reads them in a message."""
    return " x ".join(f"{float(v):.4g}" for v in values)


def image_spacing(img: nib.Nifti1Image, path: Path, ndim: int | None = None) -> tuple[float, ...]:
    """Voxel spacing in mm of each spatial source axis (at most 3), from the affine nibabel trusts.

    pixdim and the affine can disagree (a header edited by one tool and not the other); the affine
    wins, as it is the geometry a mask is written back with, and a warning gives both, unless it
    has voxels of exactly 1 (orientation only: the ACDC release), when pixdim does. A spacing
    outside PLAUSIBLE_MM is refused, unless xyzt_units names a unit that brings it into range.
    """
    n = min(len(img.shape) if ndim is None else ndim, 3)
    affine = np.asarray(img.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :n], axis=0)
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise InputError(path, f"the affine gives voxel spacing {_mm(spacing)}; a voxel must have a size > 0")
    zooms = np.asarray(img.header.get_zooms()[:n], dtype=np.float64)
    if np.allclose(spacing, zooms, rtol=PIXDIM_AGREEMENT, atol=0):
        return tuple(float(s) for s in _plausible(spacing, img, path))
    if np.allclose(spacing, 1.0, rtol=0, atol=1e-4) and (zooms > 0).all():
        _say_once("orientation-only", f"{path}: the affine (sform/qform) holds only orientation (voxels of "
                                      f"{_mm(spacing)}) and pixdim gives {_mm(zooms)} mm; using pixdim, as ITK "
                                      "does (said once for every such file, as in the ACDC release)")
        spacing = zooms
    else:
        warnings.warn(f"{path}: the affine (sform/qform) gives voxel spacing {_mm(spacing)} but pixdim says "
                      f"{_mm(zooms)}; using the affine's, which places the image and its mask", stacklevel=3)
    return tuple(float(s) for s in _plausible(spacing, img, path))


_SAID: set[str] = set()


def _say_once(kind: str, message: str) -> None:
    """Warn of `kind` once per process: the same header convention in every file of a dataset (the ACDC
    release's orientation-only affines) is one fact, not a line per file."""
    if kind not in _SAID:
        _SAID.add(kind)
        warnings.warn(message, stacklevel=4)


def _plausible(spacing: np.ndarray, img: nib.Nifti1Image, path: Path) -> np.ndarray:
    """Spacing in mm within PLAUSIBLE_MM: converted from metres or microns where xyzt_units says so and
    that explains it, else refused (a header in metres gives a scan a thousand times too small)."""
    lo, hi = PLAUSIBLE_MM

    def fits(values: np.ndarray) -> bool:
        return bool(((values >= lo) & (values <= hi)).all())

    if fits(spacing):
        return spacing
    factor, unit = UNIT_TO_MM.get(img.header.get_xyzt_units()[0], (1.0, "mm"))
    if fits(spacing * factor):
        warnings.warn(f"{path}: voxel spacing {_mm(spacing)} is in {unit} (xyzt_units); using "
                      f"{_mm(spacing * factor)} mm", stacklevel=4)
        return spacing * factor
    hint = ""
    for factor, unit in UNIT_TO_MM.values():
        if fits(spacing * factor):
            hint = f"; if it is in {unit}, that is {_mm(spacing * factor)} mm: fix the header's pixdim and affine"
    raise InputError(path, f"implausible voxel spacing {_mm(spacing)} mm (a scan's is {lo:g} to {hi:g} mm per axis)"
                           f"{hint or '; fix the header'}")


def slicing_axes(shape: tuple[int, ...], zooms: tuple[float, ...], path: Path) -> tuple[int, int, int]:
    """Choose (Z, H, W) source axes. Z is the axis of largest spacing (`spacing_axis`), unless the voxel
    counts say otherwise: an axis with at most 1/STACK_RATIO of each other axis's voxels is the stack the
    scan was acquired as (2D slices, or a CT's axial slices), and is Z whatever the spacing (slices finer
    than their pixels are unusual, and a warning says so): slicing across it would cut the anatomy
    the wrong way (measured: Dice 0.21 for a 2D stack with 1.0 mm slices of 1.61 mm pixels). H and W
    are the other two, last axis first."""
    if len(shape) == 2:
        return (2, 1, 0)  # a single slice is promoted to [1, H, W] by `to_zhw`
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(path, f"expected a 2D or 3D image, got {len(shape)}D shape {tuple(shape)}")
    z = spacing_axis(shape, zooms)
    few = min(range(3), key=lambda a: (shape[a], -a))
    others = min(shape[a] for a in range(3) if a != few)
    if few != z and shape[few] * STACK_RATIO <= others:
        warnings.warn(f"{path}: the spacing between slices ({float(zooms[few]):.4g} mm, axis {few}) is finer than "
                      f"in-plane ({_mm(zooms[:3])} mm), which is unusual; slicing along axis {few}, a stack of "
                      f"{shape[few]} slices of {shape[(few + 1) % 3]}x{shape[(few + 2) % 3]}", stacklevel=3)
        z = few
    h, w = [a for a in (2, 1, 0) if a != z][:2]
    return (z, h, w)


def spacing_axis(shape: tuple[int, ...], zooms: tuple[float, ...]) -> int:
    """The through-plane axis by spacing: the largest; where other axes' spacings come within NEAR_TIE
    of it (isotropic scans, slices no thicker than their pixels), the spacing says nothing, and it is
    the one of those axes with the fewest voxels, then the last."""
    largest = max(float(zooms[a]) for a in range(3))
    tied = [a for a in range(3) if float(zooms[a]) * NEAR_TIE >= largest]
    return min(tied, key=lambda a: (shape[a], -a))


def finite_image(data: np.ndarray, path: Path) -> np.ndarray:
    """The image as float32 with NaN and Inf voxels (resampling tools pad with NaN outside the field of
    view) set to the image's finite minimum, with a warning that counts them; an image with no finite
    voxel is refused. Import and predict both call this, so a model never sees NaN: NaN through the
    normalisation and the network gives a silently empty mask."""
    raw = np.asarray(data, dtype=np.float32)
    bad = ~np.isfinite(raw)
    n_bad = int(bad.sum())
    if not n_bad:
        return raw
    if n_bad == raw.size:
        raise InputError(path, f"every one of its {raw.size} voxels is NaN or Inf: no image to segment")
    fill = float(raw[~bad].min())
    warnings.warn(f"{path}: {n_bad} of {raw.size} voxels are NaN or Inf; set to the image's minimum {fill:g}",
                  stacklevel=2)
    raw = raw.copy()  # the array may be a read-only view of the file
    raw[bad] = fill
    return raw


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
