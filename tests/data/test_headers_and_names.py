"""Inputs a hostile tester found: scans named with a four-digit ending that are not channels, a header
whose slices are finer than its pixels, a huge scl_slope, a broken link or FIFO among predict's inputs,
a --label-map hint that must paste, and one Info.cfg warning for a whole release."""

from __future__ import annotations

import json
import os
import struct
import threading
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from idealseg.cli import main
from idealseg.data.dataset import Dataset
from idealseg.data.nifti_io import read_scan, slicing_axes
from idealseg.data.prepare import prepare
from idealseg.errors import IdealsegError, InputError
from idealseg.inference.predict import _inputs

from ..conftest import write_acdc_release, write_nifti


def _volume(seed: int, shape=(8, 8, 3)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_four_digit_endings_with_labels_of_the_same_names_are_six_scans(tmp_path):
    src = tmp_path / "src"
    for k in range(6):
        write_nifti(src / "imagesTr" / f"img_{k:04d}.nii.gz", _volume(k))
        write_nifti(src / "labelsTr" / f"img_{k:04d}.nii.gz", np.ones((8, 8, 3), np.uint8))
    ds = Dataset(prepare("nifti", src, tmp_path / "out", val="0"))
    assert ds.channels == 1
    assert sorted(c.id for c in ds.cases) == [f"img_{k:04d}" for k in range(6)]
    assert all(c.labeled for c in ds.cases)
    assert ds.load("img_0003").image.shape == (3, 8, 8)


def test_four_digit_endings_with_one_label_named_after_the_first_are_six_scans(tmp_path):
    """The usual semi-supervised folder: six scans, one of them labelled, the label named as its scan."""
    src = tmp_path / "src"
    for k in range(6):
        write_nifti(src / "imagesTr" / f"img_{k:04d}.nii.gz", _volume(k))
    write_nifti(src / "labelsTr" / "img_0000.nii.gz", np.ones((8, 8, 3), np.uint8))
    ds = Dataset(prepare("nifti", src, tmp_path / "out", val="0"))
    assert sorted(c.id for c in ds.cases) == [f"img_{k:04d}" for k in range(6)]
    assert [c.id for c in ds.cases if c.labeled] == ["img_0000"] and ds.channels == 1


def test_declared_channels_still_group_the_files(tmp_path):
    src = tmp_path / "src"
    for case in ("a", "b"):
        for k in range(2):
            write_nifti(src / "imagesTr" / f"{case}_{k:04d}.nii.gz", _volume(k))
        write_nifti(src / "labelsTr" / f"{case}.nii.gz", np.ones((8, 8, 3), np.uint8))
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2", "1": "ADC"},
                                                  "labels": {"background": 0, "fg": 1}}))
    ds = Dataset(prepare("nifti", src, tmp_path / "out", val="0"))
    assert ds.channels == 2 and sorted(c.id for c in ds.cases) == ["a", "b"]


def test_one_declared_channel_reads_endings_as_names_unless_all_are_0000(tmp_path):
    src = tmp_path / "src"
    for k in range(3):
        write_nifti(src / "imagesTr" / f"img_{k:04d}.nii.gz", _volume(k))
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}}))
    with pytest.warns(UserWarning, match="no case has a label"):
        ds = Dataset(prepare("nifti", src, tmp_path / "out"))
    assert ds.channels == 1 and len(ds.cases) == 3


def _write_raw(path: Path, data: np.ndarray, zooms: tuple[float, ...]) -> Path:
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    nib.save(img, str(path))
    return path


def test_a_stack_of_slices_finer_than_its_pixels_is_sliced_along_the_stack(tmp_path):
    path = _write_raw(tmp_path / "stack.nii", _volume(0, (64, 64, 10)), (1.61, 1.61, 1.0))
    with pytest.warns(UserWarning, match="finer than in-plane"):
        scan = read_scan(path)
    assert scan.axes[0] == 2 and scan.zhw.shape == (10, 64, 64)
    assert scan.spacing == pytest.approx((1.0, 1.61, 1.61))


@pytest.mark.parametrize("shape, zooms", [((100, 100, 40), (1.6, 1.6, 1.0)),  # a stack of 40 finer slices
                                          ((512, 512, 200), (0.97, 0.97, 0.625))])  # a CT's thin axial slices
def test_the_stack_with_half_the_voxels_is_the_slice_axis_whatever_its_spacing(shape, zooms, tmp_path):
    with pytest.warns(UserWarning, match="finer than in-plane"):
        assert slicing_axes(shape, zooms, tmp_path / "x.nii.gz")[0] == 2


@pytest.mark.parametrize("shape, zooms, z", [
    ((216, 256, 10), (1.5625, 1.5625, 10.0), 2),   # ACDC
    ((192, 192, 12), (1.25, 1.25, 8.0), 2),        # MS-CMRSeg C0
    ((64, 64, 64), (1.0, 1.0, 1.0), 2),            # isotropic: the last
    ((64, 70, 60), (1.0, 1.1, 0.9), 2),            # nearly isotropic: the fewest voxels
    ((12, 192, 192), (8.0, 1.25, 1.25), 0),        # slices first
    ((200, 180, 160), (1.0, 1.0, 3.0), 2),         # thick slices, many of them
])
def test_ordinary_scans_keep_their_slice_axis(shape, zooms, z, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert slicing_axes(shape, zooms, tmp_path / "x.nii.gz")[0] == z


def test_a_huge_scl_slope_is_refused_not_darkened(tmp_path):
    path = _write_raw(tmp_path / "scaled.nii", (np.arange(64 * 64 * 3) % 500).reshape(64, 64, 3).astype(np.int16),
                      (1.5, 1.5, 8.0))
    raw = bytearray(path.read_bytes())
    raw[112:116] = struct.pack("<f", 1e37)  # scl_slope, as another tool wrote it
    path.write_bytes(bytes(raw))
    expected = r"scaled.nii: intensities up to .* exceed float32's range .*scl_slope is 1e\+37"
    with pytest.raises(InputError, match=expected):
        read_scan(path)


def test_a_modest_scl_slope_is_applied(tmp_path):
    path = _write_raw(tmp_path / "scaled.nii", np.full((8, 8, 3), 10, np.int16), (1.5, 1.5, 8.0))
    raw = bytearray(path.read_bytes())
    raw[112:120] = struct.pack("<ff", 2.5, 1.0)  # scl_slope, scl_inter
    path.write_bytes(bytes(raw))
    scan = read_scan(path)
    assert scan.data.dtype == np.float32 and float(scan.data.max()) == 26.0


def test_predict_names_broken_links_and_fifos_and_never_opens_one(tmp_path):
    folder = tmp_path / "scans"
    write_nifti(folder / "good.nii.gz", _volume(0))
    (folder / "gone.nii.gz").symlink_to(tmp_path / "missing.nii.gz")
    os.mkfifo(folder / "pipe.nii.gz")
    found: list = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = threading.Thread(target=lambda: found.append(_inputs(folder)), daemon=True)
        worker.start()
        worker.join(10)
    assert not worker.is_alive(), "a FIFO was opened"
    assert found == [[folder / "good.nii.gz"]]
    lines = [str(w.message) for w in caught if "no regular file" in str(w.message)]
    assert len(lines) == 1 and "gone.nii.gz (broken link)" in lines[0] and "pipe.nii.gz (FIFO)" in lines[0]


def test_a_fifo_given_by_name_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.nii.gz")
    with pytest.raises(InputError, match="pipe.nii.gz: not a regular file"):
        read_scan(tmp_path / "pipe.nii.gz")


def test_a_suggested_label_map_with_a_negative_code_pastes(tmp_path, capsys):
    src = tmp_path / "src"
    for i in range(2):
        write_nifti(src / "imagesTr" / f"c{i}.nii.gz", _volume(i))
        write_nifti(src / "labelsTr" / f"c{i}.nii.gz", np.resize(np.array([0, -1, 40], np.int16), (8, 8, 3)))
    assert main(["prepare", "nifti", str(src), str(tmp_path / "ds")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    hint = line.split("e.g. ", 1)[1].split()[0]
    assert hint == "--label-map=-1:1,40:2", line
    assert main(["prepare", "nifti", str(src), str(tmp_path / "ds"), hint, "--val", "0"]) == 0


def test_a_release_without_info_cfg_is_one_warning(tmp_path):
    src = write_acdc_release(tmp_path / "acdc", n_patients=3, with_cfg=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare("acdc", src, tmp_path / "ds")
    lines = [str(w.message) for w in caught if "Info.cfg" in str(w.message)]
    assert len(lines) == 1 and "3 patient folder(s) with no Info.cfg" in lines[0], lines


def test_prepare_in_the_old_order_fails_loudly(tmp_path):
    src = tmp_path / "src"
    write_nifti(src / "imagesTr" / "a.nii.gz", _volume(0))
    with pytest.raises(InputError, match=r"is not a source folder \(SRC\) but .*src may be: the order is prepare"):
        prepare("nifti", tmp_path / "ds", src)
    assert not (tmp_path / "ds").exists()
    with pytest.raises(IdealsegError, match="the phantom is generated and reads no SRC"):
        prepare("phantom", tmp_path / "x", tmp_path / "ph")
    assert Dataset(prepare("phantom", tmp_path / "ph", patients=3)).root == tmp_path / "ph"  # as the CLI's one OUT
    with pytest.warns(UserWarning, match="no case has a label"):
        made = prepare("nifti", src, tmp_path / "ds")
    with pytest.raises(InputError, match="the order is prepare"):
        prepare("nifti", made, src, overwrite=True)


def test_one_unlabelled_case_of_several_channel_endings_is_said(tmp_path):
    src = tmp_path / "src"
    for k in range(3):
        write_nifti(src / "imagesTr" / f"img_{k:04d}.nii.gz", _volume(k))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = Dataset(prepare("nifti", src, tmp_path / "out"))
    assert ds.channels == 3
    assert any("read as one case of 3 channels" in str(w.message) for w in caught)


def test_a_scaling_that_leaves_no_contrast_in_float32_is_refused(tmp_path):
    """scl_inter 1e38 fits float32 but swallows every difference between voxels: the scan was stored flat."""
    img = nib.Nifti1Image(_volume(0).astype(np.int16) + np.arange(3, dtype=np.int16), np.diag([1.5, 1.5, 8.0, 1.0]))
    img.header.set_slope_inter(1.0, 1e38)
    nib.save(img, str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match="leaves no contrast in float32"):
        read_scan(tmp_path / "flat.nii.gz")


def test_an_info_cfg_that_is_not_text_is_one_line(tmp_path):
    from idealseg.data.importers.acdc import read_info_cfg

    (tmp_path / "Info.cfg").write_bytes(b"garbage\x00\xff")
    with pytest.raises(InputError, match="not a readable Info.cfg"):
        read_info_cfg(tmp_path / "Info.cfg")


def test_one_declared_channel_with_mixed_endings_pairs_the_label(tmp_path):
    """imagesTr/a_0000 with labelsTr/a beside imagesTs/img_0001: once blamed 'labels without images: a'."""
    src = tmp_path / "src"
    write_nifti(src / "imagesTr" / "a_0000.nii.gz", _volume(0))
    write_nifti(src / "labelsTr" / "a.nii.gz", np.ones((8, 8, 3), np.uint8))
    write_nifti(src / "imagesTs" / "img_0001.nii.gz", _volume(1))
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}}))
    ds = Dataset(prepare("nifti", src, tmp_path / "out", val="0"))
    assert {c.id: c.labeled for c in ds.cases} == {"a_0000": True, "img_0001": False}
