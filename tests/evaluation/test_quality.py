"""Per-scan quality scores (inference/quality.py) on synthetic probabilities and the phantom."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from idealseg.data.importers.phantom import phantom_case
from idealseg.evaluation.agreement import perturbation_agreement
from idealseg.inference.quality import foreground_confidence

MEANS = np.array([0.05, 0.3, 0.85])  # a hand-made 3-class "model": dark, mid-grey and bright tissue


def one_hot_probs(label: np.ndarray, peak: float, classes: int = 3) -> np.ndarray:
    """Probabilities [Z, C, H, W] with `peak` on the label's class and the rest shared evenly."""
    probs = np.full((label.shape[0], classes, *label.shape[1:]), (1 - peak) / (classes - 1), np.float32)
    np.put_along_axis(probs, label[:, None].astype(np.int64), peak, axis=1)
    return probs


def intensity_probs(image: np.ndarray) -> np.ndarray:
    """Class probabilities of a [Z, H, W] image from its lightly smoothed intensity."""
    smooth = ndimage.gaussian_filter(image, (0, 1, 1))
    logits = -((smooth[:, None] - MEANS[None, :, None, None]) ** 2) / (2 * 0.08**2)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def segment_at(image: np.ndarray, factor: float) -> np.ndarray:
    """The hand-made model's mask of the image seen at `factor` times its in-plane size, back on its grid."""
    probs = intensity_probs(ndimage.zoom(image, (1, factor, factor), order=1))
    back = ndimage.zoom(probs, (1, 1, image.shape[1] / probs.shape[2], image.shape[2] / probs.shape[3]), order=1)
    return back[..., : image.shape[1], : image.shape[2]].argmax(1)


def test_confident_prediction_scores_above_uncertain_one():
    label = np.zeros((2, 16, 16), np.uint8)
    label[:, 4:12, 4:12] = 1
    label[:, 6:10, 6:10] = 2
    assert foreground_confidence(one_hot_probs(label, 0.95)) == pytest.approx(0.95)
    assert foreground_confidence(one_hot_probs(label, 0.95)) > foreground_confidence(one_hot_probs(label, 0.5))
    assert foreground_confidence(one_hot_probs(np.zeros_like(label), 0.95)) == 0.0  # nothing found: last
    assert foreground_confidence(one_hot_probs(label, 0.9)[0]) == pytest.approx(0.9)  # one slice [C, H, W]


def test_stable_mask_scores_above_perturbation_sensitive_one():
    label = np.zeros((2, 16, 16), np.uint8)
    label[:, 4:12, 4:12] = 1
    shifted = [np.roll(label, s, axis=2) for s in (2, -3)]
    assert perturbation_agreement(label, [label, label], 2) == 1.0
    assert perturbation_agreement(label, lambda: shifted, 2) < 0.8
    with pytest.raises(ValueError):
        perturbation_agreement(label, [], 2)


def test_corrupted_phantom_scan_ranks_last():
    images = {f"clean{i}": phantom_case(0, i, 0).image for i in range(3)}
    rng = np.random.default_rng(0)
    images["noisy"] = np.clip(images["clean0"] + rng.normal(0, 0.3, images["clean0"].shape), 0, 1)
    confidence = {k: foreground_confidence(intensity_probs(v)) for k, v in images.items()}
    agreement = {k: perturbation_agreement(intensity_probs(v).argmax(1),
                                           lambda v=v: [segment_at(v, 0.9), segment_at(v, 1.1)], 3)
                 for k, v in images.items()}
    assert min(confidence, key=confidence.get) == "noisy"
    assert min(agreement, key=agreement.get) == "noisy"


def test_the_predictor_scores_masks_as_foreground_confidence_and_ranks_the_corrupted_scan_last():
    """The score the predictor returns is foreground_confidence of its own probabilities (chunk by
    chunk), and a noisy scan ranks last among clean phantom scans."""
    import torch

    from idealseg.inference.predictor import Predictor

    def network(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(intensity_probs(x[:, 0].numpy().astype(np.float64)).astype(np.float32))

    predictor = Predictor(network, input_size=32, batch_size=3)  # chunks of 3 slices
    images = {f"clean{i}": phantom_case(0, i, 0).image for i in range(3)}
    rng = np.random.default_rng(0)
    images["noisy"] = np.clip(images["clean0"] + rng.normal(0, 0.3, images["clean0"].shape), 0, 1)
    results = {k: predictor.segment(v.astype(np.float32)) for k, v in images.items()}
    direct = foreground_confidence(predictor.probabilities(images["clean1"].astype(np.float32)).numpy())
    assert results["clean1"].quality == pytest.approx(direct, abs=1e-4)
    assert min(results, key=lambda k: results[k].quality) == "noisy"


def test_predict_writes_a_quality_table_lowest_first_and_never_over_a_users_file(supervised_run, tmp_path, capsys):
    import csv

    from idealseg.cli import main

    from ..conftest import copy_run, write_nifti

    run = copy_run(supervised_run, tmp_path / "run")  # a tiny trained run of its own
    scans = tmp_path / "scans"
    for i in range(3):
        write_nifti(scans / f"p{i}.nii.gz", phantom_case(i, 0, 0).image.transpose(2, 1, 0).copy(), (1.5, 1.5, 8.0))
    out = tmp_path / "masks"
    assert main(["predict", str(run), str(scans), str(out)]) == 0
    with open(out / "idealseg_quality.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and [float(r["quality"]) for r in rows] == sorted(float(r["quality"]) for r in rows)
    assert "quality, lowest first" in capsys.readouterr().out
    assert main(["predict", str(run), str(scans), str(out)]) == 2  # exists: needs --overwrite
    assert main(["predict", str(run), str(scans), str(out), "--overwrite"]) == 0
    (out / "idealseg_quality.csv").write_text("my notes\n")
    assert main(["predict", str(run), str(scans), str(out), "--overwrite"]) == 2
    assert (out / "idealseg_quality.csv").read_text() == "my notes\n"
    assert "is not a quality table idealseg wrote" in capsys.readouterr().err
