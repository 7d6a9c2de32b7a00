"""Image/label NIfTI pairs in the Medical Segmentation Decathlon / nnU-Net naming.

    SRC/imagesTr/<case>[_0000].nii.gz   SRC/labelsTr/<case>.nii.gz   SRC/imagesTs/<case>...
Images without a label (in imagesTr or imagesTs) become unlabelled training cases. A label map
(`205:1,420:2,...`, as MMWHS needs) renumbers codes; any other non-zero value is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from idealseg.data.dataset import CaseVolume, DatasetWriter, labels_to_uint8
from idealseg.data.importers.splits import assign_splits
from idealseg.data.nifti_io import load_nifti, slicing_axes, spacing_zhw, to_zhw
from idealseg.data.normalize import normalize_volume
from idealseg.errors import IdealsegError, InputError

_SUFFIX = re.compile(r"(_0000)?\.nii(\.gz)?$")


def parse_label_map(spec: str | None) -> dict[int, int] | None:
    """'205:1,420:2' -> {205: 1, 420: 2}."""
    if not spec:
        return None
    mapping = {}
    for item in spec.split(","):
        try:
            src, dst = (int(v) for v in item.split(":"))
        except ValueError:
            raise IdealsegError(f"label map entry {item!r} is not SRC:DST with integers") from None
        mapping[src] = dst
    return mapping


def apply_label_map(label: np.ndarray, mapping: dict[int, int] | None, path: Path) -> np.ndarray:
    """Renumber codes; a non-zero code absent from the map is refused, naming the file."""
    if mapping is None:
        return labels_to_uint8(label, path)
    values = np.unique(label)
    unknown = [int(v) for v in values if v != 0 and int(v) not in mapping]
    if unknown or not np.all(np.mod(values, 1) == 0):
        raise InputError(path, f"label values {unknown} are not in the label map (map them to 0 to drop)")
    lut_keys = np.array(sorted(mapping), dtype=np.int64)
    out = np.zeros(label.shape, dtype=np.uint8)
    for code in lut_keys:
        out[label == code] = mapping[int(code)]
    return out


def _case_id(path: Path) -> str:
    return _SUFFIX.sub("", path.name)


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {_case_id(p): p for p in sorted(folder.iterdir()) if _SUFFIX.search(p.name)}


def import_nifti(
    src: Path,
    writer: DatasetWriter,
    normalization: str,
    label_map: dict[int, int] | None,
    val: str | None,
    test: str | None,
    seed: int,
) -> None:
    images = _images(src / "imagesTr")
    labels = _images(src / "labelsTr")
    unlabeled = _images(src / "imagesTs")
    if not images and not unlabeled:
        raise InputError(src, "no imagesTr/ or imagesTs/ NIfTI files found")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise InputError(src / "labelsTr", f"labels without images: {orphans[:5]}")
    clash = sorted(set(images) & set(unlabeled))
    if clash:
        raise InputError(src, f"duplicate case ids in imagesTr and imagesTs: {clash[:5]}")
    labeled_ids = sorted(c for c in images if c in labels)
    splits = assign_splits(labeled_ids, val, test, seed)
    all_cases = {**images, **unlabeled}
    for case_id in tqdm(sorted(all_cases), desc="volumes", unit="vol"):
        path = all_cases[case_id]
        data, affine, zooms, _ = load_nifti(path)
        axes = slicing_axes(data.shape, zooms, path)
        raw = np.asarray(data, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise InputError(path, "image contains NaN or Inf values")
        image = normalize_volume(to_zhw(raw, axes), normalization)
        label = None
        if case_id in labels:
            ldata, _, _, _ = load_nifti(labels[case_id])
            if ldata.shape != data.shape:
                raise InputError(
                    labels[case_id], f"image/label shape mismatch: {data.shape} vs {ldata.shape}"
                )
            label = apply_label_map(to_zhw(np.asarray(ldata), axes), label_map, labels[case_id])
        volume = CaseVolume(
            case_id, case_id, image, label, spacing_zhw(zooms, axes, path), affine, axes,
            {"source_file": path.name, "ndim": int(data.ndim)},
        )
        writer.add(volume, splits.get(case_id, "train"), labels.get(case_id, path))
    writer.finish(normalization=normalization, label_map=label_map)
