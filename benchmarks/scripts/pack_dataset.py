"""Pack an SSL4MIS-layout dataset folder (written by `idealseg prepare ssl4mis`) small enough to travel
to a lent GPU machine (64 MiB in all), and unpack it there bit for bit.

The prepared slices are float32 intensities that are integers over one scale per case (the ACDC
release's integer MRI values, min-max normalised), so each case is stored as uint16 values and its
scale; a case where that does not give back the same float32 values exactly keeps its float32.
Labels stay uint8. `unpack` checks nothing it cannot: it writes the same HDF5 keys and dataset.json.
Written as an uncompressed .npz inside xz (LZMA, preset 9e): ACDC's 160 cases are 52 MiB (deflate:
69 MiB). Packing takes minutes; unpacking seconds.
    python benchmarks/scripts/pack_dataset.py pack data/acdc_ssl4mis .pack/acdc_ssl4mis.npz.xz
    python benchmarks/scripts/pack_dataset.py unpack .pack/acdc_ssl4mis.npz.xz data/acdc_ssl4mis
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import sys
from pathlib import Path

import h5py
import numpy as np


def _refuse(message: str) -> None:
    """The project's bad-input rule: one line naming the path, exit code 2, nothing written."""
    print(message, file=sys.stderr)
    sys.exit(2)


def _as_integers(image: np.ndarray) -> tuple[np.ndarray, np.float32] | None:
    """uint16 values and a scale that give `image` back exactly, or None."""
    steps = np.diff(np.unique(image))
    if image.min() < 0 or not len(steps):
        return None
    scale = np.float32(round(1 / float(steps.min())))
    values = np.round(image.astype(np.float64) * scale)
    if values.max() > np.iinfo(np.uint16).max or not np.array_equal(values.astype(np.float32) / scale, image):
        return None
    return values.astype(np.uint16), scale


def pack(folder: Path, out: Path) -> None:
    if out.exists():
        _refuse(f"{out}: exists; pack writes a new file only")
    arrays: dict[str, np.ndarray] = {"dataset.json": np.frombuffer((folder / "dataset.json").read_bytes(), np.uint8)}
    for path in sorted((folder / "cases").glob("*.h5")):
        with h5py.File(path, "r") as f:
            image, label = f["image"][()], f["label"][()]
        packed = _as_integers(image)
        if packed is None:
            arrays[f"{path.stem}/image"] = image
        else:
            arrays[f"{path.stem}/values"], arrays[f"{path.stem}/scale"] = packed[0], np.array(packed[1])
        arrays[f"{path.stem}/label"] = label
    with lzma.open(out, "wb", preset=9 | lzma.PRESET_EXTREME) as f:
        np.savez(f, **arrays)
    print(f"{out}: {len(arrays) // 3} cases, {out.stat().st_size / 2**20:.1f} MiB")


def unpack(pack_file: Path, folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        _refuse(f"{folder}: exists and is not empty; unpack writes a new dataset folder only")
    with lzma.open(pack_file, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
    (folder / "cases").mkdir(parents=True, exist_ok=True)
    cases = sorted({name.split("/")[0] for name in data.files if "/" in name})
    for case in cases:
        if f"{case}/image" in data.files:
            image = data[f"{case}/image"]
        else:
            image = data[f"{case}/values"].astype(np.float32) / data[f"{case}/scale"]
        with h5py.File(folder / "cases" / f"{case}.h5", "w") as f:
            f.create_dataset("image", data=image, compression="lzf")
            f.create_dataset("label", data=data[f"{case}/label"], compression="lzf")
    (folder / "dataset.json").write_bytes(data["dataset.json"].tobytes())
    json.loads((folder / "dataset.json").read_text())
    print(f"{folder}: {len(cases)} cases")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    (pack if args.action == "pack" else unpack)(args.source, args.target)


if __name__ == "__main__":
    main()
