"""The dataset folder: `dataset.json` plus one HDF5 file per case, the format every stage reads.

    my_dataset/
      dataset.json          name, classes, splits, cases (patient, split, labelled, spacing...)
      cases/<case_id>.h5    image float32 [Z, H, W] in [0, 1], label uint8 [Z, H, W] if any,
                            attrs: spacing (z, y, x) in mm when known, affine and axes for NIfTI

A dataset of scans with several channels (dataset.json `channels`: C, absent for 1) stores its images as
[C, Z, H, W], and `Dataset.load` returns them so: an image has a channel axis only where C > 1, so that
every single-channel dataset and caller reads exactly as before (data/channels.py). A case's `shape`
is its grid, [Z, H, W], whatever its channels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from idealseg import __version__
from idealseg.atomic import atomic_file
from idealseg.data.dataset_schema import SPLITS, check_case_id, check_dataset_info
from idealseg.errors import IdealsegError, InputError
from idealseg.labels import IGNORE_LABEL


@dataclass
class CaseVolume:
    """One volume in memory, as an importer produces it and a writer stores it."""

    case_id: str
    patient: str
    image: np.ndarray  # float32 [Z, H, W] (or [C, Z, H, W] with C > 1 channels), normalised to [0, 1]
    label: np.ndarray | None = None  # uint8 [Z, H, W]; IGNORE_LABEL where unannotated
    spacing: tuple[float, float, float] | None = None  # (z, y, x) in mm
    affine: np.ndarray | None = None  # 4x4 NIfTI affine of the source array
    axes: tuple[int, int, int] | None = None  # source array axis feeding each of (Z, H, W)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseEntry:
    """What dataset.json records about a case, enough to plan without opening the h5."""

    id: str
    patient: str
    split: str
    labeled: bool
    shape: list[int]
    spacing: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def validate_volume(case: CaseVolume, source: str | Path, num_classes: int | None, ignore: bool = False) -> None:
    """Check one imported volume; every failure names the source file and the problem. `ignore`: the
    dataset has unannotated voxels, stored as IGNORE_LABEL, which is then no class number out of range."""
    image = case.image
    if image.ndim not in (3, 4) or (image.ndim == 4 and image.shape[0] < 2):
        raise InputError(source, "image must be 3D [Z, H, W] (or [C, Z, H, W] for C > 1 channels), got shape "
                                 f"{image.shape}")
    if image.size == 0 or min(image.shape) == 0:
        raise InputError(source, f"empty volume (shape {image.shape})")
    if not np.isfinite(image).all():
        raise InputError(source, "image contains NaN or Inf values")
    if case.label is not None:
        label = case.label
        if label.shape != image.shape[-3:]:
            raise InputError(
                source, f"image/label shape mismatch: {image.shape[-3:]} vs {label.shape}"
            )
        over = num_classes is not None and label.size and int(label.max()) >= num_classes
        bad = sorted(int(v) for v in np.unique(label) if v >= num_classes and not (ignore and v == IGNORE_LABEL)) \
            if over else []
        if bad:
            raise InputError(
                source, f"label values {bad} outside the class set 0..{num_classes - 1}"
            )
    if case.spacing is not None:
        sp = np.asarray(case.spacing, dtype=float)
        if sp.shape != (3,) or not np.isfinite(sp).all() or (sp <= 0).any():
            raise InputError(source, f"invalid voxel spacing {case.spacing} (must be > 0)")
    if case.affine is not None and not np.isfinite(case.affine).all():
        raise InputError(source, "affine contains NaN or Inf values")


def labels_to_uint8(label: np.ndarray, source: str | Path) -> np.ndarray:
    """Integer-valued labels only: fractional or negative values are an error, not a cast."""
    if not np.isfinite(label).all():
        raise InputError(source, "label contains NaN or Inf values")
    if np.issubdtype(label.dtype, np.floating) and not np.all(np.mod(label, 1) == 0):
        raise InputError(source, "label has fractional values; expected integer class ids")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise InputError(source, f"label values must be 0..255, got {label.min()}..{label.max()}")
    return label.astype(np.uint8)


class DatasetWriter:
    """Collects cases into a folder under construction (see `atomic_dir`) and writes dataset.json."""

    def __init__(self, root: Path, name: str, classes: list[str], source: str, modality: str):
        self.root = root
        self.cases_dir = root / "cases"
        self.cases_dir.mkdir(parents=True, exist_ok=True)
        self.info: dict[str, Any] = {
            "name": name,
            "modality": modality,
            "classes": classes,
            "source": source,
            "idealseg_version": __version__,
            "splits": {s: [] for s in SPLITS},
            "cases": [],
        }
        self._ids: set[str] = set()
        self.channels: int | None = None  # every case's channel count, set by the first case
        self.infer_classes = not classes  # generic NIfTI without --classes: 0..max label seen
        self._max_label = 0
        self.ignore = False  # the source marks unannotated voxels (stored as IGNORE_LABEL; dataset.json says so)
        self.notes: list[str] = []  # what the import decided for the user (a default split), said once done

    def add(self, case: CaseVolume, split: str, source: str | Path) -> None:
        """Validate and store one case volume; anything wrong with it is one line naming `source`."""
        check_case_id(case.case_id, source)
        if case.case_id in self._ids:
            raise InputError(source, f"duplicate case id {case.case_id!r}")
        if split not in SPLITS:
            raise IdealsegError(f"unknown split {split!r}; expected one of {SPLITS}")
        validate_volume(case, source, None if self.infer_classes else len(self.info["classes"]), self.ignore)
        channels = 1 if case.image.ndim == 3 else int(case.image.shape[0])
        if self.channels is not None and channels != self.channels:
            raise InputError(source, f"case {case.case_id!r} has {channels} channel(s), the dataset's other cases "
                                     f"{self.channels}; every case needs the same channels")
        self.channels = channels
        if case.label is not None and case.label.size:
            annotated = case.label[case.label != IGNORE_LABEL] if self.ignore else case.label
            self._max_label = max(self._max_label, int(annotated.max()) if annotated.size else 0)
        self._ids.add(case.case_id)
        try:
            self._write(case)
        except RuntimeError as exc:  # h5py reports a failed write (a full disk) as a RuntimeError
            raise InputError(self.cases_dir / f"{case.case_id}.h5", f"could not write ({exc})") from None
        self._record(case, split)

    def _write(self, case: CaseVolume) -> None:
        """The case's h5 file, built in memory and written in one plain write: a write that fails (a full
        disk, a file-size limit) is then an OSError here, not a failure inside HDF5's driver (which left
        a file object whose every later flush failed again, and crashed the interpreter at exit)."""
        with open(self.cases_dir / f"{case.case_id}.h5", "wb") as f:
            f.write(self._h5_image(case))

    @staticmethod
    def _h5_image(case: CaseVolume) -> bytes:
        with h5py.File(f"{case.case_id}.h5", "w", driver="core", backing_store=False) as f:
            f.create_dataset("image", data=case.image.astype(np.float32), compression="lzf")
            if case.label is not None:
                f.create_dataset("label", data=case.label.astype(np.uint8), compression="lzf")
            if case.spacing is not None:
                f.attrs["spacing"] = np.asarray(case.spacing, dtype=np.float64)
            if case.affine is not None:
                f.attrs["affine"] = np.asarray(case.affine, dtype=np.float64)
            if case.axes is not None:
                f.attrs["axes"] = np.asarray(case.axes, dtype=np.int64)
            f.flush()
            return f.id.get_file_image()

    def _record(self, case: CaseVolume, split: str) -> None:
        entry = CaseEntry(
            id=case.case_id,
            patient=case.patient,
            split=split,
            labeled=case.label is not None,
            shape=list(case.image.shape[-3:]),
            spacing=None if case.spacing is None else [float(s) for s in case.spacing],
            meta=case.meta,
        )
        self.info["cases"].append(asdict(entry))
        self.info["splits"][split].append(case.case_id)

    def finish(self, **extra: Any) -> None:
        """Write dataset.json (the folder is then complete and ready to be renamed into place)."""
        if not self.info["cases"]:
            raise IdealsegError(f"{self.info['source']}: no cases found to import")
        if self.infer_classes:
            self.info["classes"] = ["background"] + [f"class{i}" for i in range(1, self._max_label + 1)]
        self.info["channels"] = self.channels or 1
        if self.ignore:
            self.info["ignore_label"] = IGNORE_LABEL
        self.info.update(extra)
        with atomic_file(self.root / "dataset.json") as f:
            json.dump(self.info, f, indent=1)


class Dataset:
    """Read access to a dataset folder; with `fold`, its train and val splits are that fold's
    (splits.json, or nnU-Net's splits_final.json put in the folder), whole patients on each side."""

    def __init__(self, root: str | Path, fold: int | None = None):
        self.root = Path(root)
        meta = self.root / "dataset.json"
        if not meta.is_file():
            raise InputError(self.root, "not a dataset folder (no dataset.json); run `idealseg prepare`")
        try:
            self.info = json.loads(meta.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(meta, f"unreadable dataset.json ({exc})") from None
        check_dataset_info(self.info, meta)
        self.cases = [CaseEntry(**c) for c in self.info["cases"]]
        self.by_id = {c.id: c for c in self.cases}
        self.fold = fold
        if fold is not None:
            self._apply_fold(fold)

    def _apply_fold(self, fold: int) -> None:
        """Train and val from fold `fold`: a patient with a case in the fold's val validates with all its
        scans (unlabelled ones too); every other train or val patient trains. Test cases stay test."""
        from idealseg.data.folds import NNUNET_SPLITS_FILE, SPLITS_FILE, fold_split, read_folds

        # nnU-Net's splits_final.json is only ever put there by the user: it wins over the splits.json prepare wrote
        path = next((self.root / n for n in (NNUNET_SPLITS_FILE, SPLITS_FILE) if (self.root / n).is_file()), None)
        if path is None:
            raise InputError(self.root, f"--fold {fold}: no {SPLITS_FILE} (nor {NNUNET_SPLITS_FILE}) in the dataset "
                                        "folder; prepare writes one for a dataset of 2 or more labelled patients")
        patient_of = {c.id: c.patient for c in self.cases if c.split != "test"}
        held = {patient_of[c] for c, side in fold_split(read_folds(path, patient_of), fold, path).items()
                if side == "val"}
        for case in self.cases:
            if case.split != "test":
                case.split = "val" if case.patient in held else "train"

    @property
    def classes(self) -> list[str]:
        """Class names, background first."""
        return list(self.info["classes"])

    @property
    def ignore_label(self) -> int | None:
        """The stored value of unannotated voxels where the dataset has any (nnU-Net's `ignore`), else None."""
        return self.info.get("ignore_label")

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.info["classes"])

    @property
    def channels(self) -> int:
        """Channels of every image (1 for datasets prepared before channels were recorded): an image is
        [Z, H, W] where it is 1, [C, Z, H, W] where it is more."""
        return int(self.info.get("channels", 1))

    def split(self, name: str) -> list[CaseEntry]:
        """The cases of split `name` (train, val or test)."""
        return [c for c in self.cases if c.split == name]

    def case_path(self, case_id: str) -> Path:
        """The h5 file of a case."""
        return self.root / "cases" / f"{case_id}.h5"

    def load(self, case_id: str) -> CaseVolume:
        """Load one case; a missing or corrupt file is a one-line error naming it."""
        path = self.case_path(case_id)
        entry = self.by_id[case_id]
        try:
            with h5py.File(path, "r") as f:
                image = f["image"][...]
                label = f["label"][...] if "label" in f else None
                spacing = tuple(f.attrs["spacing"]) if "spacing" in f.attrs else None
                affine = f.attrs["affine"] if "affine" in f.attrs else None
                axes = tuple(int(a) for a in f.attrs["axes"]) if "axes" in f.attrs else None
        except (OSError, KeyError) as exc:
            raise InputError(path, f"unreadable case file ({exc})") from None
        stored = 1 if image.ndim == 3 else image.shape[0]
        if image.ndim not in (3, 4) or stored != self.channels:
            raise InputError(path, f"image of shape {image.shape}: dataset.json says {self.channels} channel(s); "
                                   "prepare the dataset again")
        return CaseVolume(case_id, entry.patient, image, label, spacing, affine, axes, entry.meta)
