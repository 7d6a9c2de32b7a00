"""Dice, HD95 and ASD against hand-computed cases, spacing, and the empty-mask rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from idealseg.evaluation.evaluate import summarise
from idealseg.evaluation.metrics import dice_score, surface_distances, volume_metrics


def square(shape, y0, x0, size):
    m = np.zeros(shape, bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def test_shifted_squares():
    a = square((40, 40), 10, 10, 10)
    b = square((40, 40), 10, 13, 10)  # shifted 3 px along x
    assert dice_score(a, b) == pytest.approx(2 * 70 / 200)
    hd, asd = surface_distances(a, b, (1.0, 1.0))
    assert hd == pytest.approx(3.0)
    assert 0 < asd < 3.0


def test_anisotropic_spacing_scales_distances():
    a = square((40, 40), 10, 10, 10)
    b = square((40, 40), 10, 13, 10)
    hd, _ = surface_distances(a, b, (1.0, 2.5))  # x spacing 2.5 mm
    assert hd == pytest.approx(7.5)
    hd_y, _ = surface_distances(a, b, (2.5, 1.0))
    assert hd_y == pytest.approx(3.0)


def test_concentric_discs_asd():
    yy, xx = np.mgrid[:101, :101]
    r = np.hypot(yy - 50, xx - 50)
    a, b = r <= 20, r <= 25
    hd, asd = surface_distances(a, b, (1.0, 1.0))
    assert hd == pytest.approx(5.0, abs=1.0)
    assert asd == pytest.approx(5.0, abs=1.0)


def test_3d_volume_with_slice_spacing():
    a = np.zeros((6, 20, 20), bool)
    a[1:4, 5:15, 5:15] = True
    b = np.zeros_like(a)
    b[2:5, 5:15, 5:15] = True  # one slice deeper
    hd, _ = surface_distances(a, b, (8.0, 1.5, 1.5))
    assert hd == pytest.approx(8.0)


def test_empty_mask_rules():
    ref = np.zeros((2, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, 2:5, 2:5] = 1
    out = volume_metrics(pred, ref, 3)
    assert out[1]["dice"] == 0 and math.isnan(out[1]["hd95"]) and out[1]["status"] == "one_empty"
    assert out[2]["status"] == "absent" and all(math.isnan(out[2][m]) for m in ("dice", "hd95", "asd"))


def test_undefined_distances_are_not_averaged_as_zero():
    rows = [
        {"case": "a", "class": "X", "dice": 0.0, "hd95": float("nan"), "asd": float("nan")},
        {"case": "b", "class": "X", "dice": 0.8, "hd95": 4.0, "asd": 1.0},
    ]
    s = summarise(rows, ["X"], "mm")["classes"]["X"]
    assert s["hd95"]["mean"] == 4.0 and s["hd95"]["undefined"] == 1
    assert s["dice"]["mean"] == pytest.approx(0.4)


def test_volumes_in_ml_with_spacing():
    ref = np.zeros((2, 10, 10), np.uint8)
    ref[:, :5, :5] = 1
    out = volume_metrics(ref, ref, 2, spacing=(10.0, 2.0, 2.0))
    assert out[1]["ref_volume"] == pytest.approx(50 * 40 / 1000)
