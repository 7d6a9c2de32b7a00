"""Image/label NIfTI pairs in the Medical Segmentation Decathlon / nnU-Net naming, read as nnU-Net reads them.

    SRC/dataset.json (optional)   SRC/imagesTr/<case>[_0000].nii.gz   SRC/labelsTr/<case>.nii.gz
    SRC/imagesTs/<case>[_0000].nii.gz   SRC/labelsTs/<case>.nii.gz (optional)
A case of several channels has one file each, `<case>_0000`, `<case>_0001`, ... on one grid (every case
the same channels, as many as the dataset.json's `channel_names` where it names them): the image is
stored [C, Z, H, W], each channel normalised on its own (data/channels.py).
`imagesTs` is the test split, never training data. Images of `imagesTr` without a label are the
unlabelled scans semi-supervision trains on; a folder with no labels at all is a dataset to pre-train
on. Scans are grouped by patient (`idealseg.data.patients`) and every split is by patient. A
`dataset.json` gives the class names and modality. A label map (`205:1,420:2,...`, as MMWHS needs)
renumbers codes; any other non-zero value is an error, whose message suggests a complete map. nnU-Net
v2's `ignore` label (dataset.json `"ignore": N`) is no class: its voxels are stored as IGNORE_LABEL,
before any label map (which may not name that code).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from idealseg.data.channels import (
    case_of_file,
    check_same_grid,
    group_channel_files,
    reads_channel_suffixes,
    stack_channels,
)
from idealseg.data.dataset import CaseVolume, DatasetWriter
from idealseg.data.folds import SPLITS_FILE, make_folds
from idealseg.data.importers.label_codes import LabelCodes, apply_label_map
from idealseg.data.importers.registry import ImportRequest, WriterSpec, importer
from idealseg.data.importers.source_json import SourceJson, read_source_json
from idealseg.data.importers.splits import assign_splits
from idealseg.data.nifti_io import is_nifti, load_nifti, nifti_stem, read_scan, to_zhw
from idealseg.data.patients import group_by_patient
from idealseg.errors import InputError
from idealseg.transforms.spacing import in_plane

GEOMETRY_TOLERANCE = 1e-3  # mm: image and label affines must agree this closely


def _nifti_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if is_nifti(p)]


def _images(folder: Path, suffixes: bool = True) -> dict[str, tuple[Path, ...]]:
    """Case id -> its channel files (`CASE_0000`, `CASE_0001`, ...; a file without a channel number is a
    one-channel case; every file one where `suffixes` is False), every case with the same channels
    (data/channels.py)."""
    return group_channel_files(_nifti_files(folder), folder, suffixes)


def _labels(folder: Path, image_ids: set[str] | frozenset[str] = frozenset()) -> dict[str, Path]:
    """Case id -> its label file (a label has no channels; a `_0000` suffix is dropped as nnU-Net's, unless
    the label is named exactly as a case of `image_ids`, a case named by its whole file name; a label
    `CASE` of a scan `CASE_0000` read by its whole name, nnU-Net's one-channel naming, is that scan's)."""
    by_case: dict[str, Path] = {}
    for p in _nifti_files(folder):
        stem = nifti_stem(p)
        case = stem if stem in image_ids else f"{stem}_0000" if f"{stem}_0000" in image_ids else case_of_file(p)
        other = by_case.setdefault(case, p)
        if other != p:
            raise InputError(folder, f"two files for case {case!r} ({other.name} and {p.name}); keep one")
    return by_case


def _source_cases(src: Path, source_json: SourceJson | None):
    """The images and labels of imagesTr/labelsTr and imagesTs/labelsTs, grouped into cases by one rule
    for the whole source: `_XXXX` endings are channel numbers only where dataset.json declares channels
    or the labels agree (data/channels.py `reads_channel_suffixes`)."""
    folders = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")
    files = {name: _nifti_files(src / name) for name in folders}
    declared = len(source_json.channels) if source_json and source_json.channels else None
    suffixes = reads_channel_suffixes(files["imagesTr"] + files["imagesTs"], files["labelsTr"] + files["labelsTs"],
                                      declared)
    images, tests = _images(src / "imagesTr", suffixes), _images(src / "imagesTs", suffixes)
    labels, test_labels = _labels(src / "labelsTr", set(images)), _labels(src / "labelsTs", set(tests))
    cases = [*images.values(), *tests.values()]
    if suffixes and declared is None and not labels and not test_labels and len(cases) == 1 and len(cases[0]) > 1:
        paths = cases[0]
        warnings.warn(f"{paths[0].parent}: {', '.join(p.name for p in paths)} read as one case of {len(paths)} "
                      f"channels (nnU-Net's CASE_XXXX); if they are {len(paths)} scans, add a dataset.json "
                      "naming one channel or name them without the 4-digit ending", stacklevel=3)
    return images, labels, tests, test_labels


def check_channel_names(images: dict[str, tuple[Path, ...]], source_json: SourceJson | None) -> None:
    """A source dataset.json that names its channels must name as many as each case has files."""
    if not images or not source_json or not source_json.channels:
        return
    case, paths = next(iter(images.items()))
    named = source_json.channels
    if len(paths) != len(named):
        raise InputError(paths[0], f"case {case!r} has {len(paths)} channel file(s) but dataset.json names "
                                   f"{len(named)} channel(s) ({', '.join(named)}); give each case one file per "
                                   "channel (CASE_0000, CASE_0001, ...)")


def _check_geometry(image_path: Path, label_path: Path, image_affine: np.ndarray, label_affine: np.ndarray) -> None:
    """A label is only a label of its image if both lie on the same grid in the scanner's space."""
    if not np.allclose(image_affine, label_affine, atol=GEOMETRY_TOLERANCE):
        worst = float(np.abs(image_affine - label_affine).max())
        raise InputError(label_path, f"label geometry differs from its image {image_path.name} (affines differ by "
                                     f"up to {worst:.3g} mm); resample the label onto the image grid")


def _read_image(paths: tuple[Path, ...], normalization: str):
    """(image normalised channel by channel, [Z, H, W] or [C, Z, H, W], then channel 0's affine, spacing
    (Z, H, W), axes and source shape) of one case's channel files, which must share one grid."""
    scans = [read_scan(p) for p in paths]
    check_same_grid(scans, paths)
    first = scans[0]
    return stack_channels(scans, normalization), first.affine, first.spacing, first.axes, first.shape


def _read_label(path: Path, image_path: Path, shape: tuple, affine: np.ndarray, axes: tuple[int, int, int],
                codes: LabelCodes) -> np.ndarray:
    """The label of a scan on its grid, renumbered by the label map (its spacing is the image's)."""
    ldata, laffine, _, _ = load_nifti(path, check_spacing=False)
    if ldata.shape != shape:
        raise InputError(path, f"image/label shape mismatch: {shape} vs {ldata.shape}")
    _check_geometry(image_path, path, affine, laffine)
    ldata = np.asarray(ldata)
    codes.check(ldata, path)
    return apply_label_map(to_zhw(ldata, axes), codes.label_map, path, codes.ignore)


DEFAULT_VAL_SHARE = 5  # with no --val, one labelled patient in five (at least one) validates


def default_val(labelled_patients: int) -> str | None:
    """The --val a dataset gets when none is given: a fifth of the labelled patients, at least one, as long
    as one is left to train on. Without it a run never validates: no best checkpoint, no post-processing
    choice."""
    if labelled_patients < 2:
        return None
    return str(max(1, round(labelled_patients / DEFAULT_VAL_SHARE)))


def import_nifti(
    src: Path,
    writer: DatasetWriter,
    normalization: str,
    label_map: dict[int, int] | None,
    val: str | None,
    test: str | None,
    seed: int,
    classes: list[str] | None = None,
    patient_rule: re.Pattern | None = None,
    source_json: SourceJson | None = None,
) -> None:
    """Import a Decathlon / nnU-Net folder. Labelled patients of imagesTr are split into train, val (and
    test, when asked) by patient, each patient's unlabelled scans following it; imagesTs is the test
    split. `classes` (the user's --classes) orders a suggested label map."""
    images, labels, tests, test_labels = _source_cases(src, source_json)
    if not images and not tests:
        raise InputError(src, "no imagesTr/ or imagesTs/ NIfTI files found")
    check_channel_names(images or tests, source_json)
    for folder, found, scans in (("labelsTr", labels, images), ("labelsTs", test_labels, tests)):
        orphans = sorted(set(found) - set(scans))
        if orphans:
            raise InputError(src / folder, f"labels without images: {orphans[:5]}")
    clash = sorted(set(images) & set(tests))
    if clash:
        raise InputError(src, f"duplicate case ids in imagesTr and imagesTs: {clash[:5]}")
    patients = group_by_patient(list(images), patient_rule)
    labelled = [p for p, ids in patients.items() if any(c in labels for c in ids)]
    if val is None:
        val = default_val(len(labelled))
        if val is not None:
            writer.notes.append(f"no --val given: {val} of {len(labelled)} labelled patients validate (a fifth, "
                                "at least one); --val 0 trains on all")
    by_patient = assign_splits(labelled, val, test, seed)
    splits = {c: by_patient.get(p, "train") for p, ids in patients.items() for c in ids}
    crossing = sorted(set(group_by_patient(list(tests), patient_rule)) & set(patients))
    if crossing:
        raise InputError(src, f"patient {crossing[0]!r} has scans in both imagesTr and imagesTs; a patient's "
                              "scans belong on one side (or give --patient-regex)")
    ignore = source_json.ignore if source_json else None
    codes = LabelCodes([labels[c] for c in sorted(labels)] + [test_labels[c] for c in sorted(test_labels)],
                       label_map, classes, ignore)
    writer.ignore = ignore is not None
    all_cases = {**images, **tests}
    all_labels = {**labels, **test_labels}
    patient_of = {c: p for group in (patients, group_by_patient(list(tests), patient_rule))
                  for p, ids in group.items() for c in ids}
    for case_id in tqdm(sorted(all_cases), desc="volumes", unit="vol"):
        paths = all_cases[case_id]
        path = paths[0]
        image, affine, spacing, axes, shape = _read_image(paths, normalization)
        label = None
        if case_id in all_labels:
            label = _read_label(all_labels[case_id], path, shape, affine, axes, codes)
        volume = CaseVolume(case_id, patient_of[case_id], image, label, spacing, affine, axes,
                            {"source_file": path.name, "ndim": len(shape)})
        writer.add(volume, "test" if case_id in tests else splits[case_id], all_labels.get(case_id, path))
    _write_folds(writer, patients, labels, splits, seed)
    extra = {"modality": source_json.modality} if source_json and source_json.modality else {}
    writer.finish(normalization=normalization, label_map=label_map, **extra)


def _write_folds(writer: DatasetWriter, patients: dict[str, list[str]], labels: dict[str, Path],
                 splits: dict[str, str], seed: int) -> None:
    """splits.json: 5 folds (nnU-Net's format) over the labelled patients of train and val, for --fold."""
    pool = {p: [c for c in ids if c in labels] for p, ids in patients.items()
            if splits[ids[0]] != "test" and any(c in labels for c in ids)}
    if len(pool) >= 2:
        with open(writer.root / SPLITS_FILE, "w") as f:
            json.dump(make_folds(pool, seed), f, indent=1)


def import_unlabelled(folder: Path, writer: DatasetWriter, normalization: str,
                      patient_rule: re.Pattern | None = None,
                      rescale: Callable[[np.ndarray, tuple[float, float]], float] | None = None) -> list[float]:
    """Add every scan of `folder` (its `imagesTr/` where it is a Decathlon folder; labels are never read)
    as an unlabelled training case: another centre's scans, for pre-training and semi-supervision to see
    that centre's images. Normalised as the rest of the dataset. `rescale` (an image and its in-plane
    spacing -> a multiple of that spacing) stores each scan at the scale a model would segment it at,
    so that training sees the anatomy at the size prediction will; returns each scan's multiple."""
    scans = folder / "imagesTr" if (folder / "imagesTr").is_dir() else folder
    suffixes = reads_channel_suffixes(_nifti_files(scans), [], writer.channels)
    images = _images(scans, suffixes)
    if not images:
        raise InputError(folder, "--unlabeled: holds no .nii or .nii.gz scans (nor imagesTr/ with some)")
    taken = {c["id"] for c in writer.info["cases"]}
    clash = sorted(set(images) & taken)
    if clash:
        raise InputError(images[clash[0]][0], f"--unlabeled: case id {clash[0]!r} is already in the dataset; "
                                           "rename the file")
    patients = {c: p for p, ids in group_by_patient(list(images), patient_rule).items() for c in ids}
    split_of = {c["patient"]: c["split"] for c in writer.info["cases"]}  # a known patient keeps its side
    factors: list[float] = []
    for case_id in tqdm(sorted(images), desc="unlabelled volumes", unit="vol"):
        paths = images[case_id]
        path = paths[0]
        image, affine, spacing, axes, shape = _read_image(paths, normalization)
        meta = {"source_file": path.name, "ndim": len(shape), "unlabelled_from": str(folder)}
        factor = 1.0 if rescale is None else float(rescale(image, in_plane(spacing)))
        if factor != 1.0:
            spacing = (spacing[0], spacing[1] * factor, spacing[2] * factor)
            meta["header_spacing_multiple"] = factor
        factors.append(factor)
        volume = CaseVolume(case_id, patients[case_id], image, None, spacing, affine, axes, meta)
        writer.add(volume, split_of.get(patients[case_id], "train"), path)
    return factors


def _named_classes(req: ImportRequest) -> list[str] | None:
    """The class names: the user's --classes, else the source's dataset.json."""
    if req.classes is not None:
        return req.classes
    source_json = read_source_json(req.src)
    return source_json.classes if source_json else None


def _describe(req: ImportRequest) -> WriterSpec:
    names = _named_classes(req)
    if names is None and req.label_map:
        names = ["background", *[f"class{i}" for i in range(1, max(req.label_map.values()) + 1)]]
    return WriterSpec(req.src.name, names or [], f"nifti:{req.src}", "unknown", infer_classes=names is None)


@importer("nifti", describe=_describe)
def run_nifti(req: ImportRequest, writer: DatasetWriter) -> None:
    """`idealseg prepare nifti SRC OUT`: a Decathlon / nnU-Net v2 folder, read as nnU-Net reads it."""
    import_nifti(req.src, writer, req.normalization, req.label_map, req.val, req.test, req.seed,
                 classes=_named_classes(req), patient_rule=req.patient_rule, source_json=read_source_json(req.src))
