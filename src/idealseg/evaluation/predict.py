"""`predict`: NIfTI scans in, NIfTI masks out with the input's affine, header, shape and orientation."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from idealseg.atomic import atomic_path
from idealseg.data.nifti_io import from_zhw, load_nifti, slicing_axes, to_zhw
from idealseg.data.normalize import normalize_volume
from idealseg.engine.run_folder import load_run
from idealseg.errors import IdealsegError, InputError
from idealseg.evaluation.inference import predict_volume


def _inputs(src: Path) -> list[Path]:
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if not files:
            raise InputError(src, "folder holds no .nii or .nii.gz files")
        return files
    if not src.exists():
        raise InputError(src, "file not found")
    return [src]


def _output_name(path: Path) -> str:
    stem = path.name.removesuffix(".gz").removesuffix(".nii").removesuffix("_0000")
    return f"{stem}_seg.nii.gz"


def predict_files(
    run: str | Path, src: str | Path, out: str | Path, checkpoint: str = "last", flip_tta: bool = False,
    device: str | None = None, normalization: str | None = None,
) -> list[Path]:
    """Segment one NIfTI file or a folder of them; masks go to OUT (a folder, or a file name)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg, method, _ = load_run(run, checkpoint, device)
    src, out = Path(src), Path(out)
    files = _inputs(src)
    single = len(files) == 1 and out.name.endswith((".nii", ".nii.gz"))
    from idealseg.data.dataset import Dataset

    if normalization is None:
        try:
            normalization = Dataset(cfg.dataset).info.get("normalization", "percentile")
        except IdealsegError:
            normalization = "percentile"
    written = []
    for path in tqdm(files, desc="predict", unit="vol"):
        data, affine, zooms, img = load_nifti(path)
        if data.ndim == 4 and data.shape[3] > 1:
            raise InputError(path, f"{data.shape[3]} channels/frames (shape {data.shape}); expected one 3D volume")
        axes = slicing_axes(data.shape, zooms, path)
        raw = np.asarray(data, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise InputError(path, "image contains NaN or Inf values")
        volume = to_zhw(raw, axes)
        mask = predict_volume(method.predict, normalize_volume(volume, normalization), cfg.input_size, device,
                             flip_tta=flip_tta)
        mask = from_zhw(mask, axes, ndim=3 if data.ndim != 2 else 2)
        if data.ndim == 4:
            mask = mask[..., None]
        header = img.header.copy()
        header.set_data_dtype(np.uint8)
        target = out if single else out / _output_name(path)
        with atomic_path(target) as tmp:
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine, header), str(tmp))
        written.append(target)
    return written
