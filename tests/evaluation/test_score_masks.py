"""`idealseg evaluate MASKS --labels LABELS`: any tool's masks scored with the same ruler as a run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import idealseg
from idealseg.cli import main
from idealseg.evaluation.metrics import volume_metrics
from idealseg.evaluation.score_folder import case_name

from ..conftest import write_nifti


def _volumes(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = np.zeros((12, 12, 4), np.uint8)
    ref[3:9, 3:9, 1:3] = 1
    ref[5:7, 5:7, 1:3] = 2
    pred = ref.copy()
    pred[rng.integers(0, 12), :, 1] = 1  # a stray line: Dice and HD95 that differ from a perfect mask
    return pred, ref


@pytest.fixture
def folders(tmp_path):
    masks, labels = tmp_path / "masks", tmp_path / "labels"
    for i, name in enumerate(["p1", "p2"]):
        pred, ref = _volumes(i)
        write_nifti(labels / f"{name}.nii.gz", ref, zooms=(1.5, 1.5, 8.0))
        write_nifti(masks / f"{name}_0000_seg.nii.gz", pred, zooms=(1.5, 1.5, 8.0))
    return masks, labels


def test_case_names_pair_ours_nnunets_and_manual_labels():
    from pathlib import Path

    assert {case_name(Path(n)) for n in ("p1.nii.gz", "p1_seg.nii.gz", "p1_0000_seg.nii.gz", "p1_gt.nii")} == {"p1"}


def test_masks_are_scored_in_mm_against_their_labels(folders, tmp_path, capsys):
    masks, labels = folders
    out = tmp_path / "scores"
    assert main(["evaluate", str(masks), "--labels", str(labels), "--classes", "bg,outer,inner",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    expected = [volume_metrics(*_volumes(i), 3, (1.5, 1.5, 8.0))[1]["dice"] for i in range(2)]
    assert summary["classes"]["outer"]["dice"]["mean"] == pytest.approx(np.mean(expected))
    assert summary["unit"] == "mm" and summary["volumes"] == 2
    assert "| outer |" in capsys.readouterr().out
    write_nifti(masks / "p9_seg.nii.gz", _volumes(0)[0])  # a mask without a label: said, not scored
    assert main(["evaluate", str(masks), "--labels", str(labels)]) == 0
    assert "2 volumes; 1 mask without a label, not scored" in capsys.readouterr().out
    (masks / "p9_seg.nii.gz").unlink()
    again = idealseg.score_masks(masks, labels, classes=["bg", "outer", "inner"])  # the API, writing nothing
    assert again["classes"]["outer"] == summary["classes"]["outer"]


def test_a_missing_mask_or_another_grid_is_a_one_line_error(folders, capsys):
    masks, labels = folders
    pred, _ = _volumes(0)
    write_nifti(labels / "p3.nii.gz", pred)
    assert main(["evaluate", str(masks), "--labels", str(labels)]) == 2
    assert "no mask for 1 labelled case(s), e.g. 'p3'" in capsys.readouterr().err
    write_nifti(masks / "p3.nii.gz", pred, zooms=(1.0, 1.0, 8.0))
    assert main(["evaluate", str(masks), "--labels", str(labels)]) == 2
    assert "p3.nii.gz: its affine is not its label's" in capsys.readouterr().err
    assert main(["evaluate", str(masks), "--labels", str(labels), "--tta"]) == 2
    assert "--tta: for a run folder" in capsys.readouterr().err


def test_scores_never_go_into_an_input_or_a_users_folder(folders, tmp_path, capsys):
    masks, labels = folders
    assert main(["evaluate", str(masks), "--labels", str(labels), "--out", str(masks)]) == 2
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert main(["evaluate", str(masks), "--labels", str(labels), "--out", str(theirs)]) == 2
    assert (theirs / "notes.txt").read_text() == "mine" and len(list(theirs.iterdir())) == 1
