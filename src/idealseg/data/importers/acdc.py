"""The official ACDC release: patientXXX/{Info.cfg, patientXXX_frameYY.nii.gz, ..._gt.nii.gz}.

ED and ES frames come from Info.cfg; where it is missing (as in many copies found in the wild)
the two frames with a `_gt` file are used, the lower number as ED, and one warning for the whole
release says so and for how many patients (a copy without any Info.cfg is one fact, not a line per patient).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from idealseg.data.dataset import CaseVolume, DatasetWriter, labels_to_uint8
from idealseg.data.importers.registry import ImportRequest, WriterSpec, importer
from idealseg.data.importers.splits import assign_splits
from idealseg.data.importers.ssl4mis import ACDC_CLASSES
from idealseg.data.nifti_io import load_nifti, read_scan, to_zhw
from idealseg.errors import InputError
from idealseg.transforms.normalize import normalize_volume

_FRAME = re.compile(r"^(patient\d+)_frame(\d+)_gt\.nii(\.gz)?$")


def read_info_cfg(path: Path) -> dict[str, str]:
    """Parse the `Key: value` lines of an ACDC Info.cfg."""
    info = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable Info.cfg ({type(exc).__name__}): ACDC's are plain text lines "
                               "'Key: value'") from None
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def _measure(info: dict[str, str], key: str, cfg: Path) -> float | None:
    """An optional number of Info.cfg (height, weight); `unknown` or text becomes None, with a warning."""
    if key not in info:
        return None
    try:
        return float(info[key])
    except ValueError:
        warnings.warn(f"{cfg}: {key} {info[key]!r} is not a number; recorded as unknown", stacklevel=3)
        return None


def _frames(patient_dir: Path) -> tuple[dict[str, int], dict[str, object]]:
    """ED/ES frame numbers and patient metadata for one patient folder."""
    gt_frames = sorted(
        int(m.group(2)) for p in patient_dir.iterdir() if (m := _FRAME.match(p.name))
    )
    cfg = patient_dir / "Info.cfg"
    if cfg.is_file():
        info = read_info_cfg(cfg)
        try:
            frames = {"ED": int(info["ED"]), "ES": int(info["ES"])}
        except (KeyError, ValueError):
            raise InputError(cfg, "Info.cfg lacks integer ED and ES entries") from None
        meta = {"group": info.get("Group"), "height": _measure(info, "Height", cfg),
                "weight": _measure(info, "Weight", cfg)}
        return frames, meta
    if len(gt_frames) != 2:
        raise InputError(patient_dir, f"no Info.cfg and {len(gt_frames)} _gt frames (need 2)")
    return {"ED": gt_frames[0], "ES": gt_frames[1]}, {"group": None, "height": None, "weight": None}


def _warn_missing_cfg(src: Path, missing: list[str]) -> None:
    """One line for every patient folder without an Info.cfg: how many, and the first of them."""
    if not missing:
        return
    first = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    warnings.warn(f"{src}: {len(missing)} patient folder(s) with no Info.cfg ({first}); ED/ES taken from the two "
                  "_gt frames (the lower number as ED); group, height, weight unknown", stacklevel=3)


def read_acdc_frame(image_path: Path, label_path: Path | None, normalization: str):
    """One ACDC frame as (image [Z,H,W] normalised, label or None, spacing, affine, axes)."""
    scan = read_scan(image_path)
    image = normalize_volume(scan.zhw, normalization)
    label = None
    if label_path is not None:
        ldata, _, _, _ = load_nifti(label_path, check_spacing=False)
        if ldata.shape != scan.shape:
            raise InputError(label_path, f"image/label shape mismatch: {scan.shape} vs {ldata.shape}")
        label = labels_to_uint8(to_zhw(np.asarray(ldata), scan.axes), label_path)
    return image, label, scan.spacing, scan.affine, scan.axes


def import_acdc(
    src: Path, writer: DatasetWriter, normalization: str, val: str | None, test: str | None, seed: int
) -> None:
    """Import the ACDC release: ED and ES frames of every patient folder, with spacing and metadata."""
    patients = sorted(p for p in src.iterdir() if p.is_dir() and p.name.startswith("patient"))
    if not patients:
        raise InputError(src, "no patientXXX folders found (not an ACDC release folder)")
    splits = assign_splits([p.name for p in patients], val, test, seed)
    _warn_missing_cfg(src, [p.name for p in patients if not (p / "Info.cfg").is_file()])
    for patient_dir in tqdm(patients, desc="patients", unit="patient"):
        frames, meta = _frames(patient_dir)
        for phase, frame in frames.items():
            case_id = f"{patient_dir.name}_frame{frame:02d}"
            image_path = patient_dir / f"{case_id}.nii.gz"
            label_path = patient_dir / f"{case_id}_gt.nii.gz"
            image, label, spacing, affine, axes = read_acdc_frame(
                image_path, label_path if label_path.is_file() else None, normalization
            )
            case_meta = {**meta, "phase": phase, "frame": frame, "ED": frames["ED"], "ES": frames["ES"]}
            volume = CaseVolume(case_id, patient_dir.name, image, label, spacing, affine, axes, case_meta)
            writer.add(volume, splits[patient_dir.name], image_path)
    writer.finish(normalization=normalization)


def _describe(req: ImportRequest) -> WriterSpec:
    return WriterSpec("ACDC", ACDC_CLASSES, f"acdc:{req.src}", "cine-MRI")


@importer("acdc", describe=_describe)
def run_acdc(req: ImportRequest, writer: DatasetWriter) -> None:
    """`idealseg prepare acdc RELEASE OUT [--val ...] [--test ...]`."""
    import_acdc(req.src, writer, req.normalization, req.val, req.test, req.seed)
