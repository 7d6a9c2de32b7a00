"""`prepare`: any supported source -> a dataset folder, built under a temporary name."""

from __future__ import annotations

import shutil
from pathlib import Path

from idealseg.data.dataset import DatasetWriter
from idealseg.data.importers.acdc import import_acdc
from idealseg.data.importers.nifti import import_nifti, parse_label_map
from idealseg.data.importers.phantom import PHANTOM_CLASSES, import_phantom
from idealseg.data.importers.ssl4mis import ACDC_CLASSES, import_ssl4mis
from idealseg.errors import IdealsegError, InputError
from idealseg.ownership import atomic_dir, check_no_overlap

SOURCES = ("ssl4mis", "acdc", "nifti", "phantom")


PHANTOM_BYTES = 2_500_000  # one phantom patient's two volumes in the dataset folder, measured


def estimated_size(src: Path | None, patients: int) -> int:
    """Bytes the dataset folder will take, from its source: float32 images stored with LZF take
    about 4x a gzip-compressed NIfTI's bytes, 1.5x a gzip-compressed h5's (SSL4MIS: 104 MiB of
    source, 149 MiB of dataset) and about 1x an uncompressed source's."""
    if src is None:
        return patients * PHANTOM_BYTES
    total = 0
    for path in src.rglob("*"):
        if path.is_file() and not path.is_symlink():
            factor = 4 if path.name.endswith(".gz") else 1.5 if path.suffix == ".h5" else 1
            total += int(path.stat().st_size * factor)
    return total


def check_free_space(out: Path, needed: int) -> None:
    """Refuse, before writing, a dataset the disk cannot hold: a full disk in the middle of an h5
    write can crash the HDF5 library itself, which no error handler catches."""
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(parent).free
    margin = 1.2 * needed + 16 * 2**20
    if free < margin:
        raise IdealsegError(f"{parent}: {free / 2**20:.0f} MiB free, the dataset needs about {margin / 2**20:.0f} MiB; "
                            "free some space or choose another OUT")


def prepare(
    source: str,
    out: str | Path,
    src: str | Path | None = None,
    *,
    overwrite: bool = False,
    patients: int = 20,
    seed: int = 0,
    normalization: str = "percentile",
    label_map: str | None = None,
    classes: list[str] | None = None,
    val: str | None = None,
    test: str | None = None,
    spacing_from: str | Path | None = None,
) -> Path:
    """Import `src` (of kind `source`) into the dataset folder `out`; returns `out`."""
    out = Path(out)
    if classes is not None and (len(classes) < 2 or not all(c.strip() for c in classes)):
        raise IdealsegError(f"--classes {','.join(classes)!r}: give at least two non-empty names, background first")
    if source != "phantom":
        if src is None or not Path(src).is_dir():
            raise InputError(src or "SRC", "source folder not found")
        src = Path(src)
        check_no_overlap(out, [src, spacing_from], "output folder")
    if spacing_from is not None and (source != "ssl4mis" or not Path(spacing_from).is_dir()):
        raise InputError(spacing_from, "--spacing-from takes the NIfTI release's folder, for prepare ssl4mis only")
    check_free_space(out, estimated_size(src, patients))
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if source == "phantom":
            writer = DatasetWriter(tmp, "phantom", PHANTOM_CLASSES, "phantom", "synthetic cine-MRI")
            import_phantom(writer, patients, seed)
        elif source == "ssl4mis":
            writer = DatasetWriter(tmp, src.name, ACDC_CLASSES, f"ssl4mis:{src}", "cine-MRI")
            import_ssl4mis(src, writer, Path(spacing_from) if spacing_from else None)
        elif source == "acdc":
            writer = DatasetWriter(tmp, "ACDC", ACDC_CLASSES, f"acdc:{src}", "cine-MRI")
            import_acdc(src, writer, normalization, val, test, seed)
        elif source == "nifti":
            mapping = parse_label_map(label_map)
            if classes is None:
                n = (max(mapping.values()) + 1) if mapping else None
                classes = ["background", *[f"class{i}" for i in range(1, n)]] if n else None
            writer = DatasetWriter(tmp, src.name, classes or [], f"nifti:{src}", "unknown")
            writer.infer_classes = classes is None
            import_nifti(src, writer, normalization, mapping, val, test, seed)
        else:
            raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    return out
