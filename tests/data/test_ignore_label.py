"""nnU-Net v2's `ignore` label: unannotated voxels are no class, stored as IGNORE_LABEL, and read by no
loss, no foreground crop and no metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from idealseg.cli import main
from idealseg.data.dataset import Dataset
from idealseg.data.prepare import prepare
from idealseg.evaluation.metrics import mean_foreground_dice, volume_metrics
from idealseg.evaluation.score_folder import score_folder
from idealseg.labels import IGNORE_LABEL
from idealseg.losses.dice_ce import DiceCELoss
from idealseg.transforms.patches import crop_patches

from ..conftest import write_nifti

LABELS = {"background": 0, "RV": 1, "LV": 2, "ignore": 3}


def _label(rng) -> np.ndarray:
    """(x, y, z) labels: two classes, and a band of unannotated voxels (3, the ignore value)."""
    label = np.zeros((16, 16, 3), np.uint8)
    label[3:8, 3:8] = 1
    label[8:13, 8:13] = 2
    label[:, 14:, :] = 3
    label[rng.integers(0, 3), 0, :] = 3
    return label


@pytest.fixture
def ignore_folder(tmp_path):
    """An nnU-Net v2 folder of 4 labelled patients whose dataset.json has an `ignore` label."""
    src, rng = tmp_path / "Dataset099_Ignore", np.random.default_rng(0)
    for p in range(1, 5):
        write_nifti(src / "imagesTr" / f"case{p}_0000.nii.gz", rng.random((16, 16, 3)).astype(np.float32))
        write_nifti(src / "labelsTr" / f"case{p}.nii.gz", _label(rng))
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": LABELS,
                                                  "numTraining": 4, "file_ending": ".nii.gz"}))
    return src


def test_the_ignore_label_is_no_class_and_is_stored_as_the_reserved_value(ignore_folder, tmp_path):
    ds = Dataset(prepare("nifti", ignore_folder, tmp_path / "ds", val="1"))
    assert ds.classes == ["background", "RV", "LV"] and ds.ignore_label == IGNORE_LABEL
    label = ds.load(ds.cases[0].id).label
    assert set(np.unique(label).tolist()) == {0, 1, 2, IGNORE_LABEL}


@pytest.mark.parametrize("labels, problem", [
    ({"background": 0, "ignore": 1, "RV": 2}, "not the largest label value 2"),
    ({"background": 0, "RV": 1, "ignore": 3}, "expected 0, 1, 2"),
])
def test_an_ignore_label_that_is_not_the_largest_is_one_line(ignore_folder, tmp_path, capsys, labels, problem):
    (ignore_folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    assert main(["prepare", "nifti", str(ignore_folder), str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err.strip()
    assert problem in err and "dataset.json" in err and "Traceback" not in err and not (tmp_path / "ds").exists()


def test_a_label_map_may_not_name_the_ignore_code(ignore_folder, tmp_path, capsys):
    assert main(["prepare", "nifti", str(ignore_folder), str(tmp_path / "ds"), "--label-map", "1:1,2:2,3:1"]) == 2
    assert "'ignore' label" in capsys.readouterr().err


def test_ignore_pixels_get_no_gradient_from_dice_or_ce():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :, :3] = IGNORE_LABEL
    for weight in (None, torch.rand(2, 8, 8)):
        logits = torch.randn(2, 3, 8, 8, requires_grad=True)
        DiceCELoss(3)(logits, target, weight).backward()
        assert logits.grad[:, :, :, :3].abs().max() == 0 and logits.grad[:, :, :, 3:].abs().max() > 0
    # the loss does not see what the ignore pixels predict, and an all-ignore batch is 0, not NaN
    logits = torch.randn(2, 3, 8, 8)
    other = logits.clone()
    other[:, :, :, :3] = torch.randn(2, 3, 8, 3)
    assert DiceCELoss(3)(logits, target) == DiceCELoss(3)(other, target)
    assert float(DiceCELoss(3).cross_entropy(logits, torch.full((2, 8, 8), IGNORE_LABEL))) == 0.0


def test_the_loss_is_unchanged_where_nothing_is_ignored():
    """Bit for bit the loss as it was written before (every committed run trained with it)."""
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    probs = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float()
    inter, denom = (probs * onehot).sum((0, 2, 3)), (probs * probs).sum((0, 2, 3)) + (onehot * onehot).sum((0, 2, 3))
    dice = 1 - ((2 * inter + 1e-5) / (denom + 1e-5))[1:].mean()
    expected = 1.0 * torch.nn.functional.cross_entropy(logits, target) + 1.0 * dice
    assert torch.equal(DiceCELoss(3)(logits, target), expected)


def test_the_foreground_crop_never_centres_on_unannotated_pixels():
    """One foreground pixel in a canvas of ignore pixels: a third of the crops are centred on it (a
    uniform 16-pixel crop of 128 finds it 2 % of the time, as would a crop centred on an ignore pixel)."""
    labels = torch.full((1, 128, 128), IGNORE_LABEL, dtype=torch.uint8)
    labels[0, 90, 90] = 1
    images = torch.zeros(1, 1, 128, 128)
    images[0, 0, 90, 90] = 1.0
    generator = torch.Generator().manual_seed(0)
    found = sum(float(crop_patches(images, labels, 1, 16, generator)[0].sum()) for _ in range(90))
    assert found >= 20


def test_a_prediction_that_differs_only_where_unannotated_scores_one():
    ref = np.zeros((2, 12, 12), np.uint8)
    ref[:, 2:6, 2:6], ref[:, 6:10, 6:10], ref[:, :, 11] = 1, 2, IGNORE_LABEL
    pred = np.where(ref == IGNORE_LABEL, 1, ref)  # class 1 all over the unannotated band
    out = volume_metrics(pred, ref, 3, (8.0, 1.5, 1.5))
    assert [out[c]["dice"] for c in (1, 2)] == [1.0, 1.0] and out[1]["hd95"] == 0.0
    assert out[1]["pred_volume"] == out[1]["ref_volume"]
    assert mean_foreground_dice(pred, ref, 3) == 1.0
    pred[0, 2, 2] = 0  # an error on an annotated voxel still counts
    assert volume_metrics(pred, ref, 3)[1]["dice"] < 1.0


def test_a_tiny_run_trains_validates_and_evaluates_without_the_ignore_class(ignore_folder, tmp_path):
    import yaml

    from idealseg.evaluation.evaluate import evaluate_run
    from idealseg.pipeline import train

    root = prepare("nifti", ignore_folder, tmp_path / "ds", val="1")
    train(root, tmp_path / "run", method="supervised", skip_pretrain=True, profile="tiny", threads=1,
          iterations=2, val_every=2, labeled="all")
    finetune = tmp_path / "run" / "finetune"
    assert yaml.safe_load((finetune / "config.yaml").read_text())["classes"] == ["background", "RV", "LV"]
    assert math.isfinite(json.loads((finetune / "summary.json").read_text())["best_val_dice"])
    summary = evaluate_run(finetune, "val")
    assert set(summary["classes"]) == {"RV", "LV", "mean"}


def test_scoring_an_nnunet_labels_folder_leaves_its_ignore_voxels_out(ignore_folder, tmp_path):
    masks = tmp_path / "masks"
    for path in sorted((ignore_folder / "labelsTr").iterdir()):
        ref = np.asarray(__import__("nibabel").load(path).dataobj)
        write_nifti(masks / path.name, np.where(ref == 3, 2, ref).astype(np.uint8))  # LV where unannotated
    summary = score_folder(masks, ignore_folder / "labelsTr", classes=["background", "RV", "LV"])
    assert summary["classes"]["LV"]["dice"]["mean"] == 1.0


def test_a_reference_holding_the_reserved_value_without_an_ignore_label_is_refused(tmp_path, capsys):
    ref = np.zeros((8, 8, 2), np.uint8)
    ref[2:5, 2:5] = IGNORE_LABEL
    write_nifti(tmp_path / "labels" / "p1.nii.gz", ref)
    write_nifti(tmp_path / "masks" / "p1.nii.gz", ref)
    assert main(["evaluate", str(tmp_path / "masks"), "--labels", str(tmp_path / "labels")]) == 2
    assert "reserves for unannotated voxels" in capsys.readouterr().err
