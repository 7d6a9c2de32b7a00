"""Only the classes a volume holds are scored: a class in neither its reference nor the mask is absent
(not Dice 1), left out of every mean and of the choice of best.pt, counted and said once."""

from __future__ import annotations

import csv
import json
import math
import warnings

import h5py
import numpy as np
import pytest
import torch

from idealseg.cli import main
from idealseg.evaluation.agreement import perturbation_agreement
from idealseg.evaluation.evaluate import markdown_table, summarise
from idealseg.evaluation.metrics import mean_foreground_dice, volume_metrics

from ..conftest import ACDC, require, write_nifti


def _volume(seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A reference holding classes 1..classes-1 and a mask that misses part of class 1."""
    rng = np.random.default_rng(seed)
    ref = np.zeros((3, 16, 16), np.uint8)
    for c in range(1, classes):
        ref[:, 2 * c : 2 * c + 4, 3:12] = c
    pred = ref.copy()
    pred[rng.integers(0, 3), 2:4, :] = 0
    return pred, ref


def _rows(volumes, num_classes: int, names: list[str]) -> list[dict]:
    return [{"case": f"v{i}", "class": names[c], **m} for i, (pred, ref) in enumerate(volumes)
            for c, m in volume_metrics(pred, ref, num_classes).items()]


def test_a_class_in_no_volume_is_absent_not_a_perfect_score():
    volumes = [_volume(i) for i in range(3)]
    names = ["background", "A", "B", "never"]  # dataset.json names a class no label holds
    rows = _rows(volumes, 4, names)
    never = [r for r in rows if r["class"] == "never"]
    assert [r["status"] for r in never] == ["absent"] * 3
    assert all(math.isnan(r[m]) for r in never for m in ("dice", "hd95", "asd"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = summarise(rows, names[1:], "voxels")
    said = [str(w.message) for w in caught if "absent" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("3 class/volume pair(s) of 3 volume(s)")  # once, not per volume
    present = [r["dice"] for r in rows if r["class"] != "never"]
    assert summary["classes"]["mean"]["dice"]["mean"] == pytest.approx(np.mean(present))
    assert summary["classes"]["never"]["dice"] == {"mean": None, "std": None, "undefined": 0}
    assert summary["absent"] == {"A": 0, "B": 0, "never": 3}
    assert "3 class/volume pair(s) with the class in neither" in markdown_table(summary)


def test_a_class_absent_from_the_reference_but_predicted_is_a_false_positive_scored_zero():
    pred, ref = _volume(0)
    pred[0, 14:16, 14:16] = 3  # the mask finds a class the reference does not have
    out = volume_metrics(pred, ref, 4)
    assert out[3]["status"] == "false_positive" and out[3]["dice"] == 0.0 and math.isnan(out[3]["hd95"])
    rows = _rows([(pred, ref)], 4, ["background", "A", "B", "C"])
    mean = summarise(rows, ["A", "B", "C"], "voxels")["classes"]["mean"]["dice"]["mean"]
    assert mean == pytest.approx((out[1]["dice"] + out[2]["dice"] + 0.0) / 3)  # nnU-Net: counted as 0


def test_where_every_class_is_in_every_reference_the_scores_are_what_they_were():
    """ACDC's case: no absent pair, so the means are the plain means of the old rule, bit for bit."""
    volumes = [_volume(i, classes=4) for i in range(4)]
    names = ["background", "RV", "Myo", "LV"]
    rows = _rows(volumes, 4, names)
    assert {r["status"] for r in rows} == {"ok"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say
        summary = summarise(rows, names[1:], "voxels")
    per_volume = [np.mean([r["dice"] for r in rows if r["case"] == f"v{i}"]) for i in range(4)]
    assert summary["classes"]["mean"]["dice"]["mean"] == float(np.mean(per_volume))
    assert summary["classes"]["LV"]["dice"]["mean"] == float(np.mean([r["dice"] for r in rows if r["class"] == "LV"]))
    assert "absent" not in markdown_table(summary)
    pred, ref = volumes[0]
    assert mean_foreground_dice(pred, ref, 4) == float(np.mean([volume_metrics(pred, ref, 4)[c]["dice"]
                                                                 for c in (1, 2, 3)]))


def test_every_acdc_reference_holds_every_class():
    """Why the committed ACDC numbers cannot move: no ACDC volume lacks RV, Myo or LV."""
    volumes = [p for p in sorted((require(ACDC) / "data").glob("*.h5")) if "_slice_" not in p.name]
    assert volumes
    for path in volumes:
        with h5py.File(path) as f:
            assert {1, 2, 3} <= set(np.unique(f["label"][...]).tolist()), path.name


def test_agreement_between_masks_still_counts_a_class_both_lack_as_agreed():
    """quality.py's perturbation agreement compares two predictions, not a reference: unchanged."""
    pred, _ = _volume(0)
    assert perturbation_agreement(pred, [pred.copy()], 4) == 1.0
    assert math.isnan(mean_foreground_dice(np.zeros_like(pred), np.zeros_like(pred), 4))


def test_scoring_masks_names_the_absent_pairs_once_and_keeps_their_rows(tmp_path, capsys):
    masks, labels, out = tmp_path / "masks", tmp_path / "labels", tmp_path / "scores"
    for i in range(2):
        pred, ref = _volume(i)
        write_nifti(labels / f"p{i}.nii.gz", ref.transpose(1, 2, 0))
        write_nifti(masks / f"p{i}.nii.gz", pred.transpose(1, 2, 0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["evaluate", str(masks), "--labels", str(labels), "--classes", "bg,A,B,never",
                     "--out", str(out)]) == 0
    said = [str(w.message) for w in caught if "class/volume pair(s)" in str(w.message)]
    assert len(said) == 1 and "excluded from the means" in said[0]
    assert "2 class/volume pair(s) with the class in neither" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "per_volume.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows if r["class"] == "never"] == ["absent", "absent"]
    present = [float(r["dice"]) for r in rows if r["class"] != "never"]
    assert summary["classes"]["mean"]["dice"]["mean"] == pytest.approx(np.mean(present))
    assert summary["classes"]["mean"]["dice"]["mean"] < 0.99  # the old rule averaged in two 1.0s


def test_validation_picks_best_on_the_classes_a_volume_holds(phantom, tmp_path, monkeypatch):
    """A stub predictor that misses every RV pixel, on val references without LV: val Dice is the mean of
    RV (0) and Myo (1), 0.5, not 0.667 with LV scored 1; said once over two validations."""
    from idealseg.config import resolve_config
    from idealseg.engine import trainer as trainer_module
    from idealseg.engine import validation

    options = {"method": "supervised", "dataset": str(phantom), "labeled": "2", "val_every": 1, "threads": 1,
               "iterations": 1}
    trainer = trainer_module.Trainer(resolve_config("finetune", "tiny", None, options), tmp_path / "run")
    for case in trainer.val_cases:
        case.label = np.where(case.label == 3, 0, case.label)

    class MissesRV:
        def predict(self, image, spacing):
            return np.where(self.label == 1, 0, self.label)

    stub = MissesRV()
    monkeypatch.setattr(validation.Predictor, "from_method", lambda *a, **k: stub)
    stub.label = trainer.val_cases[0].label
    trainer.val_cases = trainer.val_cases[:1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = trainer.validate()
        trainer.validate()
    assert row["val_dice"] == pytest.approx(0.5) and trainer.best == pytest.approx(0.5)
    assert math.isnan(row["val_dice_LV"]) and row["val_dice_RV"] == 0.0
    assert sum("excluded from val Dice" in str(w.message) for w in caught) == 1
    assert torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=False)["val_dice"] == \
        pytest.approx(0.5)
