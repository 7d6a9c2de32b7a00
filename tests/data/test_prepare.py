"""prepare/info: every importer produces the same dataset folder, faithfully."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest

from idealseg.cli import main
from idealseg.data.dataset import Dataset
from idealseg.data.importers.phantom import phantom_case
from idealseg.data.prepare import prepare

from ..conftest import ACDC, ACDC_NIFTI, require, write_acdc_release, write_nifti, write_ssl4mis


def test_ssl4mis_restacks_slices_bit_for_bit(tmp_path):
    src = write_ssl4mis(tmp_path / "src")
    ds = Dataset(prepare("ssl4mis", src, tmp_path / "ds"))
    assert len(ds.split("train")) == 6 and len(ds.split("val")) == 2
    for name in (src / "train_slices.list").read_text().split():
        case, z = name.rsplit("_slice_", 1)
        with h5py.File(src / "data" / f"{name}.h5") as f:
            vol = ds.load(case)
            assert np.array_equal(vol.image[int(z) - 1], f["image"][...])
            assert np.array_equal(vol.label[int(z) - 1], f["label"][...])
    assert len(ds.info["slice_order"]) == 18


def test_real_acdc_ssl4mis_import(tmp_path, capsys):
    src = require(ACDC)
    out = tmp_path / "acdc"
    assert main(["prepare", "ssl4mis", str(src), str(out)]) == 0
    ds = Dataset(out)
    assert len(ds.split("train")) == 140 and len(ds.split("val")) == 20
    assert sum(c.shape[0] for c in ds.split("train")) == 1312
    assert len({c.patient for c in ds.split("train")}) == 70
    names = (src / "train_slices.list").read_text().split()
    positions = ds.info["slice_order"]  # "case:z" of each list entry, in list order
    for i in np.random.default_rng(0).choice(len(names), 40, replace=False):
        case, z = positions[i].split(":")
        assert case == names[i].rsplit("_slice_", 1)[0]
        with h5py.File(src / "data" / f"{names[i]}.h5") as f:
            vol = ds.load(case)
            assert np.array_equal(vol.image[int(z)], f["image"][...])
            assert np.array_equal(vol.label[int(z)], f["label"][...])
    capsys.readouterr()
    assert main(["info", str(out), "--labeled", "ssl4mis:7"]) == 0
    text = capsys.readouterr().out
    assert "train: 140 cases" in text and "1312 slices" in text and "val  : 20 cases" in text
    assert "136 slices of 7 patients" in text


def test_real_acdc_release_matches_ssl4mis_files(tmp_path):
    src = require(ACDC_NIFTI)
    require(ACDC)
    with pytest.warns(UserWarning, match="no Info.cfg"):
        ds = Dataset(prepare("acdc", src, tmp_path / "ds", normalization="minmax"))
    assert len(ds.cases) == 12
    entry = ds.by_id["patient078_frame01"]  # a validation patient, stored as a volume in ../acdc
    case = ds.load(entry.id)
    with h5py.File(ACDC / "data" / "patient078_frame01.h5") as f:
        assert np.array_equal(case.label, f["label"][...])
        assert np.abs(case.image - f["image"][...]).max() == 0
    assert case.spacing[0] == 10.0 and 1.3 < case.spacing[1] < 1.4
    assert entry.meta["phase"] == "ED" and entry.meta["group"] is None
    es = [c for c in ds.cases if c.patient == "patient071" and c.meta["phase"] == "ES"][0]
    assert es.id == "patient071_frame09"


def test_acdc_release_keeps_spacing_affine_and_info_cfg(tmp_path):
    src = write_acdc_release(tmp_path / "src", 3)
    ds = Dataset(prepare("acdc", src, tmp_path / "ds", val="1", seed=0))
    assert len(ds.split("val")) == 2 and len(ds.split("train")) == 4
    case = ds.load("patient001_frame01")
    img = nib.load(str(src / "patient001" / "patient001_frame01.nii.gz"))
    assert case.image.shape == (4, 18, 20)  # (x, y, z) -> [z, y, x]
    assert case.spacing == pytest.approx((10.0, 1.4, 1.4))
    assert np.allclose(case.affine, img.affine)
    assert 0.0 <= case.image.min() and case.image.max() <= 1.0
    meta = ds.by_id["patient002_frame09"].meta
    assert meta["group"] == "DCM" and meta["height"] == 180.0 and meta["phase"] == "ES"


def test_decathlon_folder_with_label_map_and_unlabelled_images(tmp_path):
    src = tmp_path / "mmwhs"
    rng = np.random.default_rng(0)
    codes = np.array([0, 205, 420, 500])
    for i in range(3):
        write_nifti(src / "imagesTr" / f"ct_{i}_0000.nii.gz", rng.random((12, 10, 5)).astype(np.float32),
                    (0.8, 0.8, 2.0))
        write_nifti(src / "labelsTr" / f"ct_{i}.nii.gz", codes[rng.integers(0, 4, (12, 10, 5))].astype(np.int16),
                    (0.8, 0.8, 2.0))
    write_nifti(src / "imagesTs" / "ct_9.nii.gz", rng.random((12, 10, 5)).astype(np.float32), (0.8, 0.8, 2.0))
    ds = Dataset(prepare("nifti", src, tmp_path / "ds", label_map="205:1,420:2,500:3"))
    assert ds.classes == ["background", "class1", "class2", "class3"]
    assert len(ds.cases) == 4 and not ds.by_id["ct_9"].labeled
    case = ds.load("ct_0")
    assert case.image.shape == (5, 10, 12) and set(np.unique(case.label)) <= {0, 1, 2, 3}
    assert case.spacing == pytest.approx((2.0, 0.8, 0.8))


def test_phantom_is_deterministic_and_varied():
    a, b = phantom_case(3, 1, 0), phantom_case(3, 1, 0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    c = phantom_case(3, 2, 0)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)
    es = phantom_case(3, 1, 1)
    assert (es.label == 3).sum() < (a.label == 3).sum()  # the LV contracts at end-systole
    assert set(np.unique(a.label)) == {0, 1, 2, 3}
    blood = a.image[a.label == 3].mean()
    assert abs(a.image[a.label == 1].mean() - blood) < 0.15  # RV and LV pools look alike


def test_phantom_splits(phantom):
    ds = Dataset(phantom)
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [6, 2, 2]
    patients = {s: {c.patient for c in ds.split(s)} for s in ("train", "val", "test")}
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])


def test_ssl4mis_takes_spacing_from_the_release_and_checks_the_shapes(tmp_path, capsys):

    src = write_ssl4mis(tmp_path / "src", n_patients=3, slices=3, size=16)
    release = tmp_path / "release"
    for p in (1, 2, 3):
        write_nifti(release / f"patient{p:03d}" / f"patient{p:03d}_frame01.nii.gz",
                    np.zeros((16, 16, 3), np.float32), zooms=(1.25, 1.25, 10.0))  # (x, y, z) as released
    ds = prepare("ssl4mis", src, tmp_path / "ds", spacing_from=release)
    assert {tuple(c.spacing) for c in Dataset(ds).cases} == {(10.0, 1.25, 1.25)}
    write_nifti(release / "patient003" / "patient003_frame01.nii.gz", np.zeros((16, 16, 4), np.float32))
    capsys.readouterr()
    assert main(["prepare", "ssl4mis", str(src), str(tmp_path / "ds2"), "--spacing-from", str(release)]) == 2
    assert "not the same volume" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists()


def test_info_prints_the_fingerprint_and_the_plan(phantom, capsys):

    assert main(["info", str(phantom)]) == 0
    out = capsys.readouterr().out
    assert "in-plane spacing:" in out and "plan: target in-plane spacing" in out
    assert "profile cpu: 128 px patch covers" in out
