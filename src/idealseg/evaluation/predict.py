"""`predict`: NIfTI scans in, NIfTI masks out with the input's affine, header, shape and orientation."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from idealseg.atomic import atomic_path
from idealseg.data.nifti_io import from_zhw, load_nifti, slicing_axes, spacing_zhw, to_zhw
from idealseg.data.normalize import normalize_volume
from idealseg.data.physical import oversize
from idealseg.errors import IdealsegError, InputError
from idealseg.evaluation.inference import in_plane, predict_volume
from idealseg.ownership import describe
from idealseg.runfolder.folder import load_run, run_largest_component

MASK_SUFFIXES = ("_seg", "_gt")  # masks by name (ours and the common manual conventions)


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii")


def looks_like_mask(path: Path) -> bool:
    """A file named as a mask (`p1_seg.nii.gz`, `p1_gt.nii`, anything under labelsTr): not a scan to segment."""
    return _stem(path).endswith(MASK_SUFFIXES) or "labelsTr" in path.parts


def _inputs(src: Path) -> list[Path]:
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.name.endswith((".nii", ".nii.gz")) and p.is_file())
        masks = [p for p in files if looks_like_mask(p)]
        if masks:
            warnings.warn(f"{src}: skipping {len(masks)} file(s) named as masks ({describe([p.name for p in masks])})",
                          stacklevel=3)
        files = [p for p in files if p not in masks]
        if not files:
            raise InputError(src, "folder holds no .nii or .nii.gz scans")
        return files
    if not src.exists():
        raise InputError(src, "file not found")
    if looks_like_mask(src):
        warnings.warn(f"{src}: named as a mask, segmenting it as a scan because it was given by name", stacklevel=3)
    return [src]


def _output_name(path: Path) -> str:
    return f"{_stem(path).removesuffix('_0000')}_seg.nii.gz"


def plan_outputs(files: list[Path], out: Path, overwrite: bool = False) -> list[Path]:
    """Where each mask goes, checked before anything is written: never onto an input, never two masks
    onto one name, never onto an existing file unless `overwrite`."""
    single = len(files) == 1 and out.name.endswith((".nii", ".nii.gz"))
    if not single and out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder (give a folder for the masks)")
    targets = [out] if single else [out / _output_name(p) for p in files]
    inputs = {p.resolve(): p for p in files}
    folders = {p.parent for p in inputs}
    seen: dict[Path, Path] = {}
    for path, target in zip(files, targets, strict=True):
        key = target.resolve()
        if key in inputs:
            raise InputError(target, f"is an input scan; predict never writes over its input ({path})")
        if key in seen:
            raise InputError(target, f"two inputs would write this mask ({seen[key].name} and {path.name}); "
                                     "rename one of them")
        seen[key] = path
        if target.exists() and key.parent in folders:
            raise InputError(target, "exists in the input folder; predict never replaces a file there "
                                     "(it may be a manual mask): write the masks to another folder")
        if target.exists() and not overwrite:
            raise InputError(target, "exists (pass --overwrite to replace existing masks)")
    return targets


def run_normalization(cfg) -> str:
    """The intensity normalisation the run was trained with, from the run folder itself."""
    if cfg.normalization:
        return cfg.normalization
    from idealseg.data.dataset import Dataset  # runs from before the field: ask their dataset

    try:
        return Dataset(cfg.dataset).info.get("normalization", "percentile")
    except IdealsegError:
        warnings.warn(f"the run records no normalisation and its dataset ({cfg.dataset or 'none named'}) is not "
                      "readable: using percentile normalisation", stacklevel=2)
        return "percentile"


def predict_files(
    run: str | Path, src: str | Path, out: str | Path, checkpoint: str = "last", flip_tta: bool = False,
    device: str | None = None, normalization: str | None = None, overwrite: bool = False,
    largest_component: bool | None = None,
) -> list[Path]:
    """Segment one NIfTI file or a folder of them; masks go to OUT (a folder, or a file name).
    `largest_component` None: the post-processing the run's validation chose."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg, method, _ = load_run(run, checkpoint, device)
    if largest_component is None:
        largest_component = run_largest_component(run)
    src, out = Path(src), Path(out)
    files = _inputs(src)
    targets = plan_outputs(files, out, overwrite)
    normalization = normalization or run_normalization(cfg)
    if not cfg.spacing_mm:
        warnings.warn(f"{run}: this model knows no physical size (trained on slices resized to {cfg.input_size} px "
                      "whatever their spacing); it is only right on scans framed like its training set", stacklevel=2)
    first = None
    for path in tqdm(files, desc="check scans", unit="vol", leave=False):  # every scan is checked before a write
        scan = read_scan(path)
        first = first or scan
        if cfg.spacing_mm:
            data, _, axes, img = scan
            shape = to_zhw(data, axes).shape[1:]
            spacing = in_plane(spacing_zhw(img.header.get_zooms()[:3], axes, path))
            reason = oversize(shape, spacing, cfg.spacing_mm)
            if reason:
                raise InputError(path, f"the model's spacing: {reason}: check the header's spacing")
    written = []
    for i, (path, target) in enumerate(tqdm(list(zip(files, targets, strict=True)), desc="predict", unit="vol")):
        data, affine, axes, img = first if i == 0 else read_scan(path)
        spacing = spacing_zhw(img.header.get_zooms()[:3], axes, path)
        mask = predict_volume(method.predict, normalize_volume(to_zhw(data, axes), normalization), cfg.input_size,
                              device, flip_tta=flip_tta, spacing=in_plane(spacing), target_spacing=cfg.spacing_mm,
                              largest_component=largest_component, amp=cfg.amp)
        mask = from_zhw(mask, axes, ndim=3 if data.ndim != 2 else 2)
        if data.ndim == 4:
            mask = mask[..., None]
        header = img.header.copy()
        header.set_data_dtype(np.uint8)
        with atomic_path(target) as tmp:
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine, header), str(tmp))
        written.append(target)
    return written


def read_scan(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], nib.Nifti1Image]:
    """(float32 array, affine, slicing axes, image) of a scan predict can segment, or a one-line error."""
    data, affine, zooms, img = load_nifti(path)
    if data.ndim == 4 and data.shape[3] > 1:
        raise InputError(path, f"{data.shape[3]} channels/frames (shape {data.shape}); expected one 3D volume")
    axes = slicing_axes(data.shape, zooms, path)
    raw = np.asarray(data, dtype=np.float32)
    if not np.isfinite(raw).all():
        raise InputError(path, "image contains NaN or Inf values")
    return raw, affine, axes, img
