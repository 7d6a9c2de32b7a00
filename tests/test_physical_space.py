"""Physical space: target spacing, canvases and patches, and inference that does not depend on framing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

import idealseg
from idealseg.data.dataset import Dataset
from idealseg.data.importers.phantom import phantom_raw
from idealseg.data.physical import FOREGROUND_SHARE, canvas_size, centre, crop_patches, resolve_spacing
from idealseg.data.slice_store import SliceStore
from idealseg.errors import IdealsegError
from idealseg.evaluation.inference import predict_volume

from .conftest import write_nifti, write_ssl4mis


def test_target_spacing_auto_none_or_a_number(phantom, tmp_path):
    ds = Dataset(phantom)
    spacings = [s for c in ds.cases for s in c.spacing[1:]]
    assert resolve_spacing("auto", ds) == pytest.approx(float(np.median(spacings)))
    assert resolve_spacing("none", ds) == 0.0 and resolve_spacing("2.5", ds) == 2.5
    ssl = Dataset(idealseg.prepare("ssl4mis", tmp_path / "ssl", write_ssl4mis(tmp_path / "src")))
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
    native = predict_volume(net, image, 64, spacing=(spacing, spacing), target_spacing=target)
    # the same anatomy scanned at twice the pixel size and framed in twice the field of view
    coarse = ndimage.zoom(image, (1, 0.5, 0.5), order=1)
    side = coarse.shape[1] * 2
    framed = centre(torch.from_numpy(coarse), side).numpy()
    other = predict_volume(net, framed, 64, spacing=(2 * spacing, 2 * spacing), target_spacing=target)
    assert other.shape == framed.shape and native.shape == image.shape
    back = centre(torch.from_numpy(other), coarse.shape[1]).numpy()  # the framed mask, cropped back
    expected = ndimage.zoom(native, (1, coarse.shape[1] / image.shape[1], coarse.shape[2] / image.shape[2]),
                            order=0)
    assert 0.05 < expected.mean() < 0.6  # the stand-in segments something, not everything
    agreement = 2 * ((back > 0) & (expected > 0)).sum() / ((back > 0).sum() + (expected > 0).sum())
    assert (agreement > 0.9) == alike, agreement


def test_predict_in_physical_space_writes_the_input_grid(phantom, tmp_path):
    run = idealseg.finetune(phantom, tmp_path / "run", method="supervised", labeled="2", profile="tiny",
                            iterations=2, val_every=0, threads=1)
    assert idealseg.load(run).spacing_mm > 0
    image = phantom_raw(5, 0, 0)[0].astype(np.float32)
    affine = np.array([[0.0, -1.2, 0.1, 30.0], [1.3, 0.0, 0.0, -5.0], [0.0, 0.2, 7.0, 2.0], [0, 0, 0, 1.0]])
    scan = write_nifti(tmp_path / "oblique.nii.gz", np.transpose(image, (2, 1, 0))[:, :100], zooms=(1.3, 1.2, 7.0),
                       affine=affine)
    idealseg.predict_files(run, scan, tmp_path / "mask.nii.gz")
    mask, source = nib.load(tmp_path / "mask.nii.gz"), nib.load(scan)
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    huge = write_nifti(tmp_path / "in" / "huge.nii.gz", np.ones((64, 64, 3), np.float32), zooms=(300.0, 300.0, 8.0))
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


def test_partial_spacing_warns_and_evaluation_needs_spacing(phantom, tmp_path, capsys):
    from idealseg.cli import main

    first = Dataset(phantom).cases[0].id
    partial = Dataset(_without_spacing(phantom, tmp_path / "partial", {first}))
    with pytest.warns(UserWarning, match="1 of .* cases have no spacing, so this run resizes slices"):
        assert resolve_spacing("auto", partial) == 0.0
    with pytest.raises(IdealsegError, match="more than 4096 on a side; choose a coarser --target-spacing"):
        resolve_spacing("0.01", Dataset(phantom))
    run = idealseg.finetune(phantom, tmp_path / "run", method="supervised", labeled="2", profile="tiny",
                            iterations=2, val_every=0, threads=1)
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
