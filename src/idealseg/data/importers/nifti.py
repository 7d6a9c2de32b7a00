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
_CHANNEL = re.compile(r"^(.+)_(\d{4})\.nii(\.gz)?$")  # nnU-Net: one file per channel, CASE_XXXX
MAX_CLASS = 31  # more classes than this, without a --label-map, is a coded mask (0/255), not a class set
GEOMETRY_TOLERANCE = 1e-3  # mm: image and label affines must agree this closely


def parse_label_map(spec: str | None) -> dict[int, int] | None:
    """'205:1,420:2' -> {205: 1, 420: 2}."""
    if not spec:
        return None
    mapping: dict[int, int] = {}
    for item in spec.split(","):
        try:
            src, dst = (int(v) for v in item.split(":"))
        except ValueError:
            raise IdealsegError(f"--label-map entry {item!r} is not SRC:DST with integers") from None
        if src in mapping:
            raise IdealsegError(f"--label-map maps {src} twice ({src}:{mapping[src]} and {item}); keep one")
        if not 0 <= dst <= MAX_CLASS:
            raise IdealsegError(f"--label-map entry {item!r}: the class number must be 0 to {MAX_CLASS}")
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
    files = [p for p in sorted(folder.iterdir()) if _SUFFIX.search(p.name)]
    channels: dict[str, list[str]] = {}
    for p in files:
        match = _CHANNEL.match(p.name)
        if match:
            channels.setdefault(match.group(1), []).append(match.group(2))
    multi = {case: chans for case, chans in channels.items() if chans != ["0000"]}
    if multi:
        case, chans = sorted(multi.items())[0]
        raise InputError(folder, f"case {case!r} has channel file(s) _{', _'.join(chans)}; idealseg segments one "
                                 "channel (_0000): keep only the _0000 files in a folder of their own")
    by_case: dict[str, Path] = {}
    for p in files:
        other = by_case.setdefault(_case_id(p), p)
        if other != p:
            raise InputError(folder, f"two files for case {_case_id(p)!r} ({other.name} and {p.name}); keep one")
    return by_case


def _check_geometry(image_path: Path, label_path: Path, image_affine: np.ndarray, label_affine: np.ndarray) -> None:
    """A label is only a label of its image if both lie on the same grid in the scanner's space."""
    if not np.allclose(image_affine, label_affine, atol=GEOMETRY_TOLERANCE):
        worst = float(np.abs(image_affine - label_affine).max())
        raise InputError(label_path, f"label geometry differs from its image {image_path.name} (affines differ by "
                                     f"up to {worst:.3g} mm); resample the label onto the image grid")


def _check_class_codes(label: np.ndarray, path: Path) -> None:
    """Without a label map, values must be class numbers; 0/255 masks and coded atlases need --label-map."""
    values = np.unique(label)
    if values.size and values.max() > MAX_CLASS:
        codes = [int(v) for v in values if v != 0]
        hint = ",".join(f"{c}:{i + 1}" for i, c in enumerate(codes[:4]))
        raise InputError(path, f"label values {codes[:6]} are not class numbers 0..{MAX_CLASS}; "
                               f"map them to classes, e.g. --label-map {hint}")


def import_nifti(
    src: Path,
    writer: DatasetWriter,
    normalization: str,
    label_map: dict[int, int] | None,
    val: str | None,
    test: str | None,
    seed: int,
) -> None:
    """Import an imagesTr/labelsTr/imagesTs folder; labelled cases are split by patient, the rest train
    as unlabelled cases."""
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
            ldata, laffine, _, _ = load_nifti(labels[case_id])
            if ldata.shape != data.shape:
                raise InputError(
                    labels[case_id], f"image/label shape mismatch: {data.shape} vs {ldata.shape}"
                )
            _check_geometry(path, labels[case_id], affine, laffine)
            if label_map is None:
                _check_class_codes(np.asarray(ldata), labels[case_id])
            label = apply_label_map(to_zhw(np.asarray(ldata), axes), label_map, labels[case_id])
        volume = CaseVolume(
            case_id, case_id, image, label, spacing_zhw(zooms, axes, path), affine, axes,
            {"source_file": path.name, "ndim": int(data.ndim)},
        )
        writer.add(volume, splits.get(case_id, "train"), labels.get(case_id, path))
    writer.finish(normalization=normalization, label_map=label_map)
