"""SSL4MIS ACDC layout: `data/*_slice_N.h5` training slices re-stacked into volumes, `*.h5` volumes.

No spacing is stored by that pre-processing, so distance metrics on it are in voxels, unless
`spacing_from` names the same patients as released (ACDC's `patientXXX/patientXXX_frameYY.nii.gz`):
each volume then takes its patient's header spacing, after a check that the shapes agree.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from tqdm import tqdm

from idealseg.data.dataset import CaseVolume, DatasetWriter, labels_to_uint8
from idealseg.data.importers.registry import ImportRequest, WriterSpec, importer
from idealseg.data.nifti_io import image_spacing
from idealseg.errors import InputError

ACDC_CLASSES = ["background", "RV", "Myo", "LV"]
_SLICE = re.compile(r"^(?P<case>.+)_slice_(?P<index>\d+)$")
_PATIENT = re.compile(r"^(patient\d+)")


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError(path, "listed but missing")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("image", "label") if k not in f]
            if missing:
                raise InputError(path, f"missing key(s) {missing} (found {sorted(f.keys())})")
            return f["image"][...], f["label"][...]
    except OSError as exc:
        raise InputError(path, f"unreadable or corrupt HDF5 file ({exc})") from None


def _patient_of(case_id: str) -> str:
    m = _PATIENT.match(case_id)
    return m.group(1) if m else case_id


class ReleaseSpacing:
    """Voxel spacing (z, y, x) of each patient, read from the headers of the NIfTI release."""

    def __init__(self, root: Path):
        self.root, self.cache = root, {}

    def __call__(self, case_id: str, shape: tuple[int, ...]) -> tuple[float, float, float]:
        patient = _patient_of(case_id)
        if patient not in self.cache:
            files = sorted(p for p in (self.root / patient).glob(f"{patient}_frame*.nii*") if "_gt" not in p.name)
            if not files:
                raise InputError(self.root / patient, f"no NIfTI of {patient} to take its spacing from")
            try:
                img = nib.load(str(files[0]))
            except Exception as exc:  # nibabel raises many types for corrupt files
                raise InputError(files[0], f"unreadable NIfTI ({type(exc).__name__}: {exc})") from None
            zooms, dims = image_spacing(img, files[0], 3), img.shape[:3]  # checked as an import's spacing
            self.cache[patient] = ((zooms[2], zooms[1], zooms[0]), tuple(dims[::-1]))
        spacing, release_shape = self.cache[patient]
        if tuple(shape) != release_shape:
            raise InputError(self.root / patient, f"{case_id} has shape {tuple(shape)} but the release's "
                                                  f"[z, y, x] shape is {release_shape}: not the same volume")
        return spacing


def import_ssl4mis(src: Path, writer: DatasetWriter, spacing_from: Path | None = None) -> None:
    """Re-stack `train_slices.list` into volumes (slice index order) and copy val/test volumes."""
    spacing = ReleaseSpacing(spacing_from) if spacing_from else None
    slices_list = src / "train_slices.list"
    if not slices_list.is_file():
        raise InputError(src, "not an SSL4MIS folder (no train_slices.list)")
    slice_names = _read_list(slices_list)
    by_case: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for name in slice_names:
        m = _SLICE.match(name)
        if not m:
            raise InputError(slices_list, f"entry {name!r} is not <case>_slice_<n>")
        by_case[m.group("case")].append((int(m.group("index")), name))
    position = {}
    for case_id, items in tqdm(sorted(by_case.items()), desc="train volumes", unit="vol"):
        items.sort()
        images, labels = [], []
        for z, (_, name) in enumerate(items):
            image, label = _read_h5(src / "data" / f"{name}.h5")
            if image.ndim != 2:
                raise InputError(src / "data" / f"{name}.h5", f"slice must be 2D, got {image.shape}")
            if images and image.shape != images[0].shape:
                raise InputError(
                    src / "data" / f"{name}.h5",
                    f"slice shape {image.shape} differs from the volume's {images[0].shape}",
                )
            images.append(image)
            labels.append(labels_to_uint8(label, src / "data" / f"{name}.h5"))
            position[name] = f"{case_id}:{z}"
        image = np.stack(images)
        volume = CaseVolume(case_id, _patient_of(case_id), image, np.stack(labels),
                            spacing(case_id, image.shape) if spacing else None)
        writer.add(volume, "train", src / "data" / f"{items[0][1]}.h5")
    slice_order = [position[name] for name in slice_names]
    for split in ("val", "test"):
        listing = src / f"{split}.list"
        if not listing.is_file():
            continue
        for case_id in tqdm(_read_list(listing), desc=f"{split} volumes", unit="vol"):
            path = src / "data" / f"{case_id}.h5"
            image, label = _read_h5(path)
            volume = CaseVolume(case_id, _patient_of(case_id), image, labels_to_uint8(label, path),
                                spacing(case_id, image.shape) if spacing else None)
            writer.add(volume, split, path)
    writer.finish(slice_order=slice_order, normalization="minmax")  # SSL4MIS's volume min-max


def _describe(req: ImportRequest) -> WriterSpec:
    return WriterSpec(req.src.name, ACDC_CLASSES, f"ssl4mis:{req.src}", "cine-MRI")


@importer("ssl4mis", describe=_describe)
def run_ssl4mis(req: ImportRequest, writer: DatasetWriter) -> None:
    """`idealseg prepare ssl4mis SRC OUT [--spacing-from RELEASE]`."""
    import_ssl4mis(req.src, writer, req.spacing_from)
