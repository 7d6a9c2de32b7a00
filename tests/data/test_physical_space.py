"""Physical space: target spacing, canvases and patches, and inference that does not depend on framing."""

from __future__ import annotations

import re
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

import idealseg
from idealseg.data.dataset import Dataset
from idealseg.data.importers.phantom import phantom_raw
from idealseg.data.nifti_io import load_nifti, read_scan, slicing_axes
from idealseg.data.slice_store import SliceStore
from idealseg.data.target_spacing import canvas_size, resolve_spacing
from idealseg.errors import IdealsegError
from idealseg.inference.predictor import Predictor
from idealseg.transforms.normalize import normalize_volume
from idealseg.transforms.patches import FOREGROUND_SHARE, crop_patches
from idealseg.transforms.resample import centre

from ..conftest import copy_run, write_nifti, write_ssl4mis


def test_target_spacing_auto_none_or_a_number(phantom, tmp_path):
    ds = Dataset(phantom)
    spacings = [s for c in ds.cases for s in c.spacing[1:]]
    assert resolve_spacing("auto", ds) == pytest.approx(float(np.median(spacings)))
    assert resolve_spacing("none", ds) == 0.0 and resolve_spacing("2.5", ds) == 2.5
    ssl = Dataset(idealseg.prepare("ssl4mis", write_ssl4mis(tmp_path / "src"), tmp_path / "ssl"))
    assert resolve_spacing("auto", ssl) == 0.0  # no spacing: slices are resized, as before
    with pytest.raises(IdealsegError, match="target_spacing 1.5 needs every case's spacing"):
        resolve_spacing("1.5", ssl)


def test_slices_keep_their_size_in_mm_on_the_canvas(phantom):
    ds = Dataset(phantom)
    target = resolve_spacing("auto", ds)
    store = SliceStore.from_dataset(ds, 64, None, spacing=target)
    side = canvas_size(ds, target, 64)
    assert store.images.shape[-2:] == (side, side) and side % 16 == 0 and 64 <= side <= 128
    assert store.labels.dtype == torch.uint8
    # the heart's area in mm^2 is kept: pixels on the canvas x target^2 against native pixels x spacing^2
    case = ds.load(ds.split("train")[0].id)
    z = int(np.argmax((case.label > 0).sum((1, 2))))
    native_mm2 = (case.label[z] > 0).sum() * case.spacing[1] * case.spacing[2]
    stored_mm2 = float((store.labels[z] > 0).sum()) * target**2
    assert stored_mm2 == pytest.approx(native_mm2, rel=0.1)


def test_patches_are_aligned_crops_and_favour_foreground():
    torch.manual_seed(0)
    labels = torch.zeros(64, 48, 48, dtype=torch.uint8)
    labels[:, 40:44, 2:6] = 2  # a small structure in a corner of each canvas
    images = labels[:, None].float() / 2 + torch.rand(64, 1, 48, 48) * 0.01
    x, y = crop_patches(images, labels, 48, 16)
    assert x.shape == (64, 1, 16, 16) and y.shape == (48, 16, 16)
    assert torch.equal((x[:48, 0] > 0.5).to(torch.uint8) * 2, y)  # each label crop is its image's crop
    seen = (y > 0).flatten(1).any(1).float().mean()
    assert seen >= FOREGROUND_SHARE - 0.1  # uniform crops would see the corner in about 7 % of draws
    same, _ = crop_patches(images[:, :, :16, :16], labels[:, :16, :16], 48, 16)
    assert torch.equal(same, images[:, :, :16, :16])  # a canvas of the patch's size is not cropped


def _scale_dependent_net(threshold: float):
    """Stands in for a trained network: class 1 where a 9 x 9 pixel mean of the input exceeds
    `threshold`. Its answer depends on how many millimetres a pixel is, as a network's does."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        fg = (F.avg_pool2d(x, 9, stride=1, padding=4, count_include_pad=False) > threshold).float()
        return torch.cat([1 - fg, fg], 1)
    return predict


@pytest.mark.parametrize("target, alike", [(1.5, True), (0.0, False)])
def test_a_reframed_phantom_is_segmented_alike_in_physical_space(target, alike):
    image = phantom_raw(0, 0, 0)[0].astype(np.float32)
    image = image / image.max()
    spacing = phantom_raw(0, 0, 0)[2].spacing_xy
    net = _scale_dependent_net(0.35)
    predictor = Predictor(net, 64, target_spacing=target)
    native = predictor.predict(image, (spacing, spacing))
    # the same anatomy scanned at twice the pixel size and framed in twice the field of view
    coarse = ndimage.zoom(image, (1, 0.5, 0.5), order=1)
    side = coarse.shape[1] * 2
    framed = centre(torch.from_numpy(coarse), side).numpy()
    other = predictor.predict(framed, (2 * spacing, 2 * spacing))
    assert other.shape == framed.shape and native.shape == image.shape
    back = centre(torch.from_numpy(other), coarse.shape[1]).numpy()  # the framed mask, cropped back
    expected = ndimage.zoom(native, (1, coarse.shape[1] / image.shape[1], coarse.shape[2] / image.shape[2]),
                            order=0)
    assert 0.05 < expected.mean() < 0.6  # the stand-in segments something, not everything
    agreement = 2 * ((back > 0) & (expected > 0)).sum() / ((back > 0).sum() + (expected > 0).sum())
    assert (agreement > 0.9) == alike, agreement


@pytest.fixture(scope="module")
def run(supervised_run, tmp_path_factory):
    """A tiny run in physical space (the phantom's ~1.5 mm: target spacing auto), for predict's and
    evaluate's checks: this module's copy of the suite's supervised run."""
    return copy_run(supervised_run, tmp_path_factory.mktemp("run") / "run")


def test_predict_in_physical_space_writes_the_input_grid(run, tmp_path):
    assert idealseg.load(run).spacing_mm > 0
    image = phantom_raw(5, 0, 0)[0].astype(np.float32)
    affine = np.array([[0.0, -1.2, 0.1, 30.0], [1.3, 0.0, 0.0, -5.0], [0.0, 0.2, 7.0, 2.0], [0, 0, 0, 1.0]])
    scan = write_nifti(tmp_path / "oblique.nii.gz", np.transpose(image, (2, 1, 0))[:, :100], zooms=(1.3, 1.2, 7.0),
                       affine=affine)
    idealseg.predict_files(run, scan, tmp_path / "mask.nii.gz")
    mask, source = nib.load(tmp_path / "mask.nii.gz"), nib.load(scan)
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    huge = write_nifti(tmp_path / "in" / "huge.nii.gz", np.ones((200, 200, 3), np.float32), zooms=(40.0, 40.0, 8.0))
    with pytest.raises(IdealsegError, match="huge.nii.gz: .* more than 4096 on a side: check the header's spacing"):
        idealseg.predict_files(run, huge.parent, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _without_spacing(phantom, out, ids=None):
    """A copy of the phantom dataset whose dataset.json forgets the spacing of `ids` (all: None)."""
    import json
    import shutil

    shutil.copytree(phantom, out)
    info = json.loads((out / "dataset.json").read_text())
    for case in info["cases"]:
        if ids is None or case["id"] in ids:
            case["spacing"] = None
    (out / "dataset.json").write_text(json.dumps(info))
    return out


def test_partial_spacing_warns_and_evaluation_needs_spacing(phantom, run, tmp_path, capsys):
    from idealseg.cli import main

    first = Dataset(phantom).cases[0].id
    partial = Dataset(_without_spacing(phantom, tmp_path / "partial", {first}))
    with pytest.warns(UserWarning, match="1 of .* cases have no spacing, so this run resizes slices"):
        assert resolve_spacing("auto", partial) == 0.0
    with pytest.raises(IdealsegError, match=r"0.01 mm is 146.1x finer than .*; give a spacing within 4x of it"):
        resolve_spacing("0.01", Dataset(phantom))  # far off: refused before any slice would be resampled
    from idealseg.transforms.resample import oversize

    assert "more than 4096 on a side" in oversize((300, 300), (1.5, 1.5), 0.1)  # a single huge case, within 4x
    bare = _without_spacing(phantom, tmp_path / "bare")
    assert main(["evaluate", str(run), "--dataset", str(bare), "--out", str(tmp_path / "ev")]) == 2
    line = capsys.readouterr().err.strip()
    assert "the run works at" in line and "have no spacing" in line and "Traceback" not in line, line
    model = idealseg.load(run)
    volume = np.random.default_rng(0).random((2, 40, 40), dtype=np.float32)
    assert model.segment(volume, True, spacing=1.5 * np.ones(2)).shape == volume.shape  # flip_tta stays second
    with pytest.raises(ValueError, match="spacing must be"):
        model.segment(volume, spacing=1.4)
    with pytest.raises(ValueError, match="more than 4096 on a side"):
        model.segment(volume, spacing=(300.0, 300.0))


def test_resuming_a_run_from_before_physical_space_says_which_option(phantom, tmp_path, capsys):
    from idealseg.cli import main

    run = tmp_path / "run"
    idealseg.finetune(phantom, run, method="supervised", labeled="2", profile="tiny", iterations=2, val_every=0,
                      threads=1, target_spacing="none")
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text("".join(line for line in config.splitlines(keepends=True)
                                             if not line.startswith(("target_spacing", "spacing_mm"))))
    args = ["finetune", str(phantom), "--out", str(run), "--resume", "--profile", "tiny", "--method", "supervised",
            "--labeled", "2", "--iterations", "4"]
    assert main(args) == 2
    assert "pass --target-spacing none to continue a run trained on resized slices" in capsys.readouterr().err
    assert main([*args, "--target-spacing", "none"]) == 0


# --- headers that cannot fool the geometry ------------------------------------------------------




def _prepare(*args):
    """`idealseg prepare ...` in-process: (exit code, its warnings then its stderr lines)."""
    import contextlib
    import io

    from idealseg.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["prepare", *[str(a) for a in args]])
    return code, [str(w.message) for w in caught] + [line for line in err.getvalue().splitlines() if "%|" not in line]


def test_spacing_comes_from_the_affine_and_a_disagreeing_pixdim_is_said(tmp_path):
    image = np.ones((8, 8, 3), np.float32)
    scaled = write_nifti(tmp_path / "scaled.nii.gz", image, zooms=(1.5, 1.5, 8.0), affine=np.diag([2.0, 2.0, 8.0, 1]))
    with pytest.warns(UserWarning, match=r"gives voxel spacing 2 x 2 x 8 but pixdim says 1.5 x 1.5 x 8; using the"):
        assert load_nifti(scaled)[2] == (2.0, 2.0, 8.0)
    # the ACDC release: an affine of axis signs only, the spacing in pixdim (as ITK reads it)
    signs = write_nifti(tmp_path / "signs.nii.gz", image, zooms=(1.4, 1.4, 10.0), affine=np.diag([-1.0, -1, 1, 1]))
    assert load_nifti(signs)[2] == pytest.approx((1.4, 1.4, 10.0))


def test_a_header_in_metres_is_refused_or_converted_with_the_numbers(tmp_path):
    image = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    write_nifti(tmp_path / "m" / "imagesTr" / "a.nii.gz", image, zooms=(0.0015, 0.0015, 0.008))
    code, err = _prepare("nifti", tmp_path / "m", tmp_path / "ds")
    assert code == 2 and "a.nii.gz: implausible voxel spacing 0.0015 x 0.0015 x 0.008 mm" in err[-1], err
    assert "if it is in metres, that is 1.5 x 1.5 x 8 mm" in err[-1] and not (tmp_path / "ds").exists()
    labelled = write_nifti(tmp_path / "u" / "imagesTr" / "a.nii.gz", image, zooms=(0.0015, 0.0015, 0.008))
    img = nib.load(labelled)
    img.header.set_xyzt_units("meter")
    nib.save(img, labelled)
    code, err = _prepare("nifti", tmp_path / "u", tmp_path / "ds")
    assert code == 0, err
    assert any("voxel spacing 0.0015 x 0.0015 x 0.008 is in metres (xyzt_units); using 1.5 x 1.5 x 8 mm" in line
               for line in err), err
    assert Dataset(tmp_path / "ds").cases[0].spacing == pytest.approx([8.0, 1.5, 1.5])


def test_predict_refuses_a_spacing_in_metres_and_warns_far_from_the_plan(run, tmp_path):
    image = phantom_raw(5, 0, 0)[0].astype(np.float32)
    metres = write_nifti(tmp_path / "m" / "scan.nii.gz", np.transpose(image, (2, 1, 0)), zooms=(0.0015, 0.0015, 0.008))
    with pytest.raises(IdealsegError, match=r"scan.nii.gz: implausible voxel spacing 0.0015 x 0.0015 x 0.008 mm"):
        idealseg.predict_files(run, metres, tmp_path / "out")
    fine = write_nifti(tmp_path / "f" / "scan.nii.gz", np.transpose(image, (2, 1, 0)), zooms=(0.3, 0.3, 8.0))
    target = idealseg.load(run).spacing_mm
    with pytest.warns(UserWarning, match=rf"scan.nii.gz: in-plane spacing 0.3 x 0.3 mm is {target / 0.3:.1f}x off "
                                         rf"the {target:.4g} mm the model was trained at"):
        idealseg.predict_files(run, fine, tmp_path / "out")


def test_slicing_axis_of_tied_spacings_is_the_one_of_fewest_voxels():
    assert slicing_axes((4, 32, 24), (1.0, 1.0, 1.0), None) == (0, 2, 1)  # isotropic: 4 slices of 32 x 24
    assert slicing_axes((32, 24, 4), (1.0, 1.0, 1.0), None) == (2, 1, 0)
    assert slicing_axes((4, 32, 24), (1.0, 1.1, 1.0), None) == (0, 2, 1)  # a near tie says nothing either
    assert slicing_axes((32, 32, 32), (1.0, 1.0, 1.0), None) == (2, 1, 0)  # a cube: the last axis
    assert slicing_axes((20, 18, 40), (1.4, 1.4, 10.0), None) == (2, 1, 0)  # a clearly coarser axis wins


def test_isotropic_scan_is_sliced_alike_by_import_and_predict(run, tmp_path):
    """An isotropic stack stored slice axis first: the slices are its 4 planes of 32 x 24, at import and
    at predict (the same function decides), not 24 planes of 4 x 32."""
    rng = np.random.default_rng(0)
    image = rng.random((4, 32, 24)).astype(np.float32)
    label = np.broadcast_to(np.arange(4, dtype=np.uint8)[:, None, None], (4, 32, 24)).copy()  # one class per slice
    src = tmp_path / "src"
    write_nifti(src / "imagesTr" / "a.nii.gz", image, zooms=(1.0, 1.0, 1.0))
    write_nifti(src / "labelsTr" / "a.nii.gz", label, zooms=(1.0, 1.0, 1.0))
    ds = Dataset(idealseg.prepare("nifti", src, tmp_path / "ds"))
    case = ds.load("a")
    assert case.image.shape == (4, 24, 32) and case.axes == (0, 2, 1)
    assert all(len(np.unique(case.label[z])) == 1 for z in range(4))  # every stored slice is one source plane
    assert read_scan(src / "imagesTr" / "a.nii.gz").axes == case.axes
    mask = idealseg.predict_files(run, src / "imagesTr" / "a.nii.gz", tmp_path / "mask.nii.gz")[0]
    assert nib.load(mask).shape == image.shape


def test_non_finite_voxels_are_set_to_the_minimum_in_predict_and_refused_by_segment(run, tmp_path):
    image = phantom_raw(5, 0, 0)[0].astype(np.float32)
    image[0, :3, :5] = np.nan
    scan = write_nifti(tmp_path / "in" / "scan.nii.gz", np.transpose(image, (2, 1, 0)))
    with pytest.warns(UserWarning, match=r"scan.nii.gz: 15 of \d+ voxels are NaN or Inf; set to the image's minimum"):
        mask = idealseg.predict_files(run, scan, tmp_path / "mask.nii.gz")[0]
    assert nib.load(mask).shape == image.T.shape
    with pytest.raises(IdealsegError, match="NaN or Inf"):  # an array in memory: no file to name, no guess
        idealseg.load(run).segment(image, spacing=(8.0, 1.5, 1.5))
    with pytest.raises(IdealsegError, match=r"volume of shape \(\d+, \d+, \d+\) has 15 NaN or Inf voxels"):
        Predictor(_scale_dependent_net(0.35), 64).predict(image)


def test_segment_of_an_empty_volume_is_one_line(run, tmp_path):
    with pytest.raises(IdealsegError, match=r"\(0, 96, 96\)"):
        idealseg.load(run).segment(np.zeros((0, 96, 96), np.float32), spacing=(8.0, 1.5, 1.5))
    for volume in (np.zeros((0, 96, 96), np.float32), np.zeros((3, 0, 8), np.float32)):
        with pytest.raises(IdealsegError, match=rf"empty volume \(shape {re.escape(str(volume.shape))}\): nothing"):
            Predictor(_scale_dependent_net(0.35), 64).predict(volume)
        with pytest.raises(IdealsegError, match=r"empty volume"):
            normalize_volume(volume)
    empty = tmp_path / "in" / "empty.nii.gz"
    empty.parent.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 0, 3), np.float32), np.eye(4)), str(empty))
    with pytest.raises(IdealsegError, match=r"empty.nii.gz: empty image \(shape \(8, 0, 3\)\)"):
        idealseg.predict_files(run, empty, tmp_path / "out")


def test_a_full_disk_in_predict_names_the_mask(run, tmp_path, monkeypatch):
    import errno
    import os

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    scan = write_nifti(tmp_path / "in" / "scan.nii.gz", np.transpose(phantom_raw(5, 0, 0)[0], (2, 1, 0)))
    monkeypatch.setattr("idealseg.inference.predict.nib.save", full)
    with pytest.raises(IdealsegError, match=r"out/scan_seg.nii.gz: could not write the mask \(No space left on"):
        idealseg.predict_files(run, scan.parent, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*"))


def _disk_volume(radius_px: float, size: int = 96, slices: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius_px**2).astype(np.float32)
    return np.repeat(disk[None], slices, 0)


def _size_sensitive_net(radius_mm: float, spacing_mm: float, input_size: int):
    """A stand-in network that is sure of its foreground only when the disk it sees has the radius it
    was 'trained' on (`radius_mm` at `spacing_mm`): what a real model does with anatomy of another size."""
    target_area = np.pi * (radius_mm / spacing_mm) ** 2 / input_size**2

    def predict(x: torch.Tensor) -> torch.Tensor:
        bright = (x > 0.5).float()
        area = bright.mean(dim=(1, 2, 3), keepdim=True)
        sure = (0.99 - 4 * (area - target_area).abs()).clamp(0.55, 0.99)
        fg = bright * sure + (1 - bright) * (1 - sure)
        return torch.cat([1 - fg, fg], 1)

    return predict


@pytest.mark.parametrize(("radius_px", "expected"), [(10.0, (1.0, 1.0)), (15.0, (0.6, 0.7))])
def test_scale_search_finds_anatomy_at_another_size_than_the_header_says(radius_px, expected):
    spacing, input_size = 1.5, 64
    predict = _size_sensitive_net(radius_mm=15.0, spacing_mm=spacing, input_size=input_size)
    # the header says 1.5 mm: a 10 px disk is the 15 mm the network knows, a 15 px one looks 1.5x too large
    factor = Predictor(predict, input_size, spacing).choose_scale(_disk_volume(radius_px), (spacing, spacing))
    assert expected[0] <= factor <= expected[1], factor
