"""Score a folder of masks made by any tool against a folder of reference labels (nnU-Net's
`evaluate_folder`): the same Dice, HD95 and ASD in mm as `evaluate`, so a run of another tool and an
idealseg run are compared with one ruler. Where the labels folder lies in an nnU-Net v2 folder whose
dataset.json has an `ignore` label (SRC/labelsTr beside SRC/dataset.json), its voxels are not scored, as
nnU-Net's own evaluation leaves them out.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from idealseg import checks
from idealseg.data.importers.source_json import source_ignore
from idealseg.data.nifti_io import is_nifti, load_nifti, nifti_stem
from idealseg.errors import IdealsegError, InputError
from idealseg.evaluation.evaluate import summarise, write_outputs
from idealseg.evaluation.metrics import volume_metrics
from idealseg.labels import IGNORE_LABEL
from idealseg.ownership import check_no_overlap, check_replaceable
from idealseg.writer_lock import writer_lock

AFFINE_TOLERANCE_MM = 1e-3  # mask and label grids that differ by more are not the same voxels
NAME_SUFFIXES = ("_seg", "_gt", "_0000")  # idealseg's mask names, manual labels, nnU-Net's first channel


def case_name(path: Path) -> str:
    """The case a mask or label file belongs to: `p1_0000_seg.nii.gz`, `p1_gt.nii` and `p1.nii.gz` are all `p1`,
    so idealseg's `predict` output, nnU-Net's and manual labels pair up without renaming."""
    name = nifti_stem(path)
    changed = True
    while changed:
        changed = False
        for suffix in NAME_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    return name


def _files(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise InputError(folder, f"{role}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_nifti(path):
            key = case_name(path)
            if key in found:
                raise InputError(path, f"{role}: a second file for case {key!r} (first: {found[key].name})")
            found[key] = path
    if not found:
        raise InputError(folder, f"{role}: holds no .nii or .nii.gz files")
    return found


def _labels(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    data, affine, spacing, _ = load_nifti(path, check_spacing=False)
    if data.ndim != 3 and not (data.ndim == 4 and data.shape[3] == 1):
        raise InputError(path, f"expected a 3D label volume, got shape {data.shape}")
    data = data.reshape(data.shape[:3])
    if not np.isfinite(data).all() or (data < 0).any() or not np.array_equal(data, np.round(data)):
        raise InputError(path, "not a label map (values must be whole numbers >= 0)")
    return data.astype(np.int64), affine, spacing[:3]


def _mark_unannotated(ref: np.ndarray, ignore: int | None, path: Path) -> np.ndarray:
    """A reference with its `ignore` voxels (the dataset.json's) as IGNORE_LABEL, which no metric scores;
    without an `ignore` label the value IGNORE_LABEL is refused, as it would be silently left out."""
    if ignore is None:
        if (ref == IGNORE_LABEL).any():
            raise InputError(path, f"holds label {IGNORE_LABEL}, which idealseg reserves for unannotated voxels; "
                                   "number the classes 0, 1, 2, ... (a 0/255 mask as 0/1)")
        return ref
    return np.where(ref == ignore, IGNORE_LABEL, ref)


def _check_names(names: list[str]) -> None:
    """Class names become the keys of the summary: an empty, repeated or reserved one would drop a class."""
    bad = [n for n in names if not n.strip() or n == "mean" or names.count(n) > 1]
    if len(names) < 2 or bad:
        raise IdealsegError(f"--classes {','.join(names)!r}: give distinct, non-empty names, background first "
                            "('mean' is the summary's own row)")


def score_folder(masks: str | Path, labels: str | Path, out: str | Path | None = None,
                 classes: list[str] | None = None) -> dict:
    """Dice, HD95 and ASD (mm, from the labels' headers) of every mask against the label of its case.

    Every label needs a mask (a missing one would silently flatter the mean); masks without a label are
    ignored and counted. `classes` names the classes from 0 (background); default: class_1, class_2, ...
    up to the largest value found (an nnU-Net dataset.json's `ignore` value is no class, not scored).
    With `out`, per_volume.csv, summary.json and table.md are written
    there, as `evaluate` writes them; without it nothing is written.
    """
    masks, labels = checks.path(masks, "MASKS"), checks.path(labels, "--labels")
    out = None if out is None else checks.output_path(out, "--out")
    predicted, reference = _files(masks, "MASKS"), _files(labels, "--labels")
    missing = sorted(set(reference) - set(predicted))
    if missing:
        raise InputError(masks, f"no mask for {len(missing)} labelled case(s), e.g. {missing[0]!r} "
                                f"(masks pair with labels by name: p1.nii.gz, p1_seg.nii.gz, p1_0000_seg.nii.gz)")
    ignore = source_ignore(labels.parent)
    pairs = []
    for key in sorted(reference):
        ref, ref_affine, spacing = _labels(reference[key])
        ref = _mark_unannotated(ref, ignore, reference[key])
        pred, pred_affine, _ = _labels(predicted[key])
        if pred.shape != ref.shape:
            raise InputError(predicted[key], f"shape {pred.shape} is not its label's {ref.shape}")
        if np.abs(pred_affine - ref_affine).max() > AFFINE_TOLERANCE_MM:
            raise InputError(predicted[key], "its affine is not its label's: the mask is on another grid "
                                             "(resample it to the label's geometry first)")
        pairs.append((key, pred, ref, spacing))
    top_label = max(int(r[r != IGNORE_LABEL].max(initial=0)) for _, _, r, _ in pairs)
    top_mask = max(int(p.max()) for _, p, _, _ in pairs)
    names = list(classes) if classes else ["background", *(f"class_{c}" for c in range(1, top_label + 1))]
    _check_names(names)
    if max(top_label, top_mask) >= len(names):
        where = "labels" if top_label >= len(names) else "masks"
        raise IdealsegError(f"the {where} hold label {max(top_label, top_mask)}, but "
                            + (f"--classes names {len(names)} classes" if classes else
                               f"the labels' classes end at {top_label}: a mask value no label has is not a class"))
    rows = []
    t0 = time.perf_counter()
    for key, pred, ref, spacing in tqdm(pairs, desc="score masks", unit="vol"):
        for c, m in volume_metrics(pred, ref, len(names), spacing).items():
            rows.append({"case": key, "patient": key, "class": names[c], **m})
    summary = summarise(rows, names[1:], "mm")
    summary.update(masks=str(masks), labels=str(labels), volumes=len(pairs), unpaired_masks=len(predicted) - len(pairs),
                   seconds=round(time.perf_counter() - t0, 2), method=f"masks in {masks}", labeled="-",
                   split=str(labels))
    if out is not None:
        check_no_overlap(out, [masks, labels], "scores folder")
        check_replaceable(out, "evaluation")
        with writer_lock(out):  # one writer a folder; checked again under the lock
            check_replaceable(out, "evaluation")
            write_outputs(out, rows, summary)
    return summary
