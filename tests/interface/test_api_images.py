"""The Python API on what users hold: `segment` of a NIfTI path or a nibabel image gives predict's mask in
the input's geometry (and writes it with `out=` as predict would); --unlabeled-scale-from refuses a run
of another task."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import idealseg
from idealseg.checks import InvalidValue
from idealseg.data.importers.phantom import PHANTOM_CLASSES, phantom_raw
from idealseg.data.nifti_io import read_scan
from idealseg.errors import IdealsegError, InputError

from ..conftest import copy_run, write_nifti


@pytest.fixture(scope="module")
def run(supervised_run, tmp_path_factory) -> Path:
    """A tiny run in physical space (the phantom's 1.5 mm): this module's copy of the suite's run."""
    return copy_run(supervised_run, tmp_path_factory.mktemp("run") / "run")


def _scan(path: Path, patient: int = 0) -> Path:
    """A phantom volume as a NIfTI file in (x, y, z) order, 1.5 x 1.5 x 8 mm: sliced along its last axis."""
    return write_nifti(path, np.transpose(phantom_raw(5, patient, 0)[0] * 300.0, (2, 1, 0)).astype(np.float32))


def test_a_path_an_image_and_predict_give_one_mask(run, tmp_path):
    path = _scan(tmp_path / "in" / "p0.nii.gz")
    segmenter = idealseg.load(run, device="cpu")
    by_path = segmenter.segment(path)
    by_str = segmenter.segment(str(path))
    by_image = segmenter.segment(nib.load(path))
    written = idealseg.predict_files(run, path, tmp_path / "out" / "p0_seg.nii.gz", device="cpu")[0]
    by_predict = np.asarray(nib.load(written).dataobj)
    assert by_path.shape == nib.load(path).shape and by_path.dtype == np.uint8
    assert np.array_equal(by_path, by_predict) and np.array_equal(by_str, by_predict)
    assert np.array_equal(by_image, by_predict)
    assert by_path.any()
    scan = read_scan(path)  # an array with the header's spacing: today's behaviour, [Z, H, W]
    by_array = segmenter.segment(scan.zhw, spacing=scan.spacing)
    assert np.array_equal(by_array, np.transpose(by_predict, scan.axes))


def test_out_writes_as_predict_and_never_over_a_file_unasked(run, tmp_path):
    path = _scan(tmp_path / "in" / "p1.nii.gz", patient=1)
    segmenter = idealseg.load(run, device="cpu")
    mask, quality = segmenter.segment(path, out=tmp_path / "masks" / "p1_seg.nii.gz", with_quality=True)
    written = nib.load(tmp_path / "masks" / "p1_seg.nii.gz")
    assert np.array_equal(np.asarray(written.dataobj), mask) and 0 <= quality <= 1
    assert np.allclose(written.affine, nib.load(path).affine)
    with pytest.raises(InputError, match="p1_seg.nii.gz: exists"):
        segmenter.segment(path, out=tmp_path / "masks" / "p1_seg.nii.gz")
    segmenter.segment(nib.load(path), out=tmp_path / "masks" / "p1_seg.nii.gz", overwrite=True)
    foreign = write_nifti(tmp_path / "masks" / "manual.nii.gz", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(InputError, match="not a mask idealseg wrote"):
        segmenter.segment(path, out=foreign, overwrite=True)
    with pytest.raises(InputError, match="is an input scan"):
        segmenter.segment(path, out=path, overwrite=True)


def test_what_segment_refuses_of_an_image_or_path(run, tmp_path):
    path = _scan(tmp_path / "p2.nii.gz", patient=2)
    segmenter = idealseg.load(run, device="cpu")
    with pytest.raises(InvalidValue, match="spacing: an image or path has its spacing in its header"):
        segmenter.segment(path, spacing=(8.0, 1.5, 1.5))
    with pytest.raises(InvalidValue, match="out: a mask is written only for an image or path"):
        segmenter.segment(read_scan(path).zhw, spacing=(8.0, 1.5, 1.5), out=tmp_path / "m.nii.gz")
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        segmenter.segment(tmp_path / "missing.nii.gz")
    with pytest.raises(InvalidValue, match="give the mask's file name"):
        segmenter.segment(path, out=tmp_path / "masks")


def _labelled_source(root: Path, zooms: tuple[float, float, float], classes: int) -> Path:
    for i in range(2):
        image = np.transpose(phantom_raw(5, i, 0)[0] * 300.0, (2, 1, 0)).astype(np.float32)
        write_nifti(root / "imagesTr" / f"c{i}.nii.gz", image, zooms)
        label = np.zeros(image.shape, np.uint8)
        label[4:8, 4:8, :] = np.arange(classes)[-1]
        write_nifti(root / "labelsTr" / f"c{i}.nii.gz", label, zooms)
    return root


def test_unlabeled_scale_from_refuses_a_run_of_another_task(run, tmp_path):
    other = _scan(tmp_path / "other" / "o1.nii.gz").parent
    liver = _labelled_source(tmp_path / "liver", (1.5, 1.5, 8.0), 2)
    with pytest.raises(IdealsegError, match=r"the run segments background, .*; this dataset's classes are "
                                            r"background, liver"):
        idealseg.prepare("nifti", liver, tmp_path / "a", classes=["background", "liver"], val="0",
                         unlabeled=other, unlabeled_scale_from=run)
    coarse = _labelled_source(tmp_path / "coarse", (6.0, 6.0, 8.0), len(PHANTOM_CLASSES))
    with pytest.raises(IdealsegError, match=r"the run works at [\d.]+ mm in-plane, this dataset's scans are at 6 mm"):
        idealseg.prepare("nifti", coarse, tmp_path / "b", classes=list(PHANTOM_CLASSES), val="0",
                         unlabeled=other, unlabeled_scale_from=run)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
