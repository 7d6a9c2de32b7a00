"""Bad input: a one-line error naming the file and the problem, exit code 2, no partial output."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from idealseg.cli import main

from .conftest import write_acdc_release, write_nifti, write_ssl4mis


def _corrupt_h5(src: Path) -> str:
    victim = sorted((src / "data").glob("*_slice_*.h5"))[0]
    victim.write_bytes(b"not an hdf5 file at all")
    return victim.name


def _missing_key(src: Path) -> str:
    victim = sorted((src / "data").glob("*_slice_*.h5"))[0]
    with h5py.File(victim, "w") as f:
        f["img"] = np.zeros((16, 16), np.float32)
    return "missing key(s) ['image', 'label']"


def _label_outside(src: Path) -> str:
    victim = sorted((src / "data").glob("*_slice_*.h5"))[0]
    with h5py.File(victim, "a") as f:
        label = f["label"][...]
        label[0, 0] = 7
        del f["label"]
        f["label"] = label
    return "label values [7] outside the class set 0..3"


def _nan_image(src: Path) -> str:
    victim = sorted((src / "data").glob("patient*_frame??.h5"))[0]  # a val volume
    with h5py.File(victim, "a") as f:
        image = f["image"][...]
        image[0, 0, 0] = np.nan
        del f["image"]
        f["image"] = image
    return "NaN or Inf"


def _shape_mismatch(src: Path) -> str:
    victim = sorted((src / "data").glob("patient*_frame??.h5"))[0]
    with h5py.File(victim, "a") as f:
        del f["label"]
        f["label"] = np.zeros((2, 16, 16), np.uint8)
    return "image/label shape mismatch"


def _empty_volume(src: Path) -> str:
    victim = sorted((src / "data").glob("patient*_frame??.h5"))[0]
    with h5py.File(victim, "w") as f:
        f["image"] = np.zeros((0, 16, 16), np.float32)
        f["label"] = np.zeros((0, 16, 16), np.uint8)
    return "empty volume"


def _duplicate_ids(src: Path) -> str:
    val = (src / "val.list").read_text().split()
    (src / "val.list").write_text("\n".join(val + val[:1]) + "\n")
    return f"duplicate case id '{val[0]}'"


def _missing_listed(src: Path) -> str:
    (src / "val.list").write_text("patient099_frame01\n")
    return "patient099_frame01.h5: listed but missing"


SSL4MIS_CASES = {
    "corrupt h5": (_corrupt_h5, "unreadable or corrupt HDF5"),
    "missing key": (_missing_key, None),
    "label outside class set": (_label_outside, None),
    "NaN in image": (_nan_image, None),
    "shape mismatch": (_shape_mismatch, None),
    "empty volume": (_empty_volume, None),
    "duplicate case ids": (_duplicate_ids, None),
    "list names a missing file": (_missing_listed, None),
}


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, (err[-1] if err else "")


@pytest.mark.parametrize("name", SSL4MIS_CASES)
def test_ssl4mis_bad_input(name, tmp_path, capsys):
    src = write_ssl4mis(tmp_path / "src")
    breaker, expected = SSL4MIS_CASES[name]
    message = breaker(src)
    expected = expected or message
    out = tmp_path / "out"
    code, line = run_cli(["prepare", "ssl4mis", src, out], capsys)
    assert code == 2, line
    assert line.startswith("idealseg prepare: error: ") and expected in line, line
    assert str(src) in line  # names the file
    assert not out.exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


def test_output_exists_needs_overwrite(tmp_path, capsys):
    src = write_ssl4mis(tmp_path / "src")
    out = tmp_path / "out"
    assert run_cli(["prepare", "ssl4mis", src, out], capsys)[0] == 0
    code, line = run_cli(["prepare", "ssl4mis", src, out], capsys)
    assert code == 2 and "output folder exists" in line and "--overwrite" in line
    assert run_cli(["prepare", "ssl4mis", src, out, "--overwrite"], capsys)[0] == 0


def test_truncated_nifti(tmp_path, capsys):
    src = write_acdc_release(tmp_path / "src", 1)
    victim = src / "patient001" / "patient001_frame01.nii.gz"
    victim.write_bytes(gzip.compress(b"\x00" * 100)[:40])
    code, line = run_cli(["prepare", "acdc", src, tmp_path / "out"], capsys)
    assert code == 2 and "patient001_frame01.nii.gz: unreadable NIfTI" in line
    assert not (tmp_path / "out").exists()


def test_fractional_labels_and_unmapped_codes(tmp_path, capsys):
    src = tmp_path / "nii"
    write_nifti(src / "imagesTr" / "a.nii.gz", np.random.rand(8, 8, 3).astype(np.float32))
    write_nifti(src / "labelsTr" / "a.nii.gz", np.full((8, 8, 3), 0.5, np.float32))
    code, line = run_cli(["prepare", "nifti", src, tmp_path / "o1"], capsys)
    assert code == 2 and "a.nii.gz: label has fractional values" in line
    write_nifti(src / "labelsTr" / "a.nii.gz", np.full((8, 8, 3), 999, np.int16))
    code, line = run_cli(["prepare", "nifti", src, tmp_path / "o2", "--label-map", "205:1"], capsys)
    assert code == 2 and "label values [999] are not in the label map" in line


@pytest.mark.parametrize("value", [0.0, -1.5])
def test_zero_or_negative_spacing(value, tmp_path, capsys):
    src = tmp_path / "nii"
    path = write_nifti(src / "imagesTr" / "a.nii", np.random.rand(8, 8, 3).astype(np.float32))
    raw = bytearray(path.read_bytes())
    raw[84:88] = struct.pack("<f", value)  # pixdim[2], as broken converters write it
    path.write_bytes(bytes(raw))
    code, line = run_cli(["prepare", "nifti", src, tmp_path / "o"], capsys)
    assert code == 2 and "a.nii: invalid voxel spacing" in line


def test_budget_larger_than_dataset(tmp_path, capsys):
    src = write_ssl4mis(tmp_path / "src")
    assert run_cli(["prepare", "ssl4mis", src, tmp_path / "ds"], capsys)[0] == 0
    code, line = run_cli(["info", tmp_path / "ds", "--labeled", "50"], capsys)
    assert code == 2 and "asks for 50 patients but the train split has 3" in line
