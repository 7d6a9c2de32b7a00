"""Losses and augmentation against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from idealseg.losses.consistency import cross_pseudo_loss, sigmoid_rampup
from idealseg.losses.dense_contrastive import DenseContrastiveLoss
from idealseg.losses.dice_ce import DiceCELoss
from idealseg.losses.global_contrastive import NTXentLoss
from idealseg.transforms.augment import WEAK, cell_centers, correspondence, random_theta, two_views, warp, warp_labels


def _orthogonal_map(size: int) -> torch.Tensor:
    """[1, L, S, S]: location l has the one-hot embedding e_l (orthonormal features)."""
    length = size * size
    return torch.eye(length).reshape(length, size, size)[None]


def test_dense_loss_reaches_analytic_minimum_for_identical_views():
    s, tau = 4, 0.1
    z = _orthogonal_map(s)
    idx = torch.arange(s * s)[None]
    ok = torch.ones(1, s * s, dtype=torch.bool)
    loss = DenseContrastiveLoss(tau)(z, z, idx, ok, idx, ok)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (s * s - 1) * math.exp(0)))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_dense_loss_penalises_wrong_correspondence():
    s = 4
    z = _orthogonal_map(s)
    ok = torch.ones(1, s * s, dtype=torch.bool)
    right = torch.arange(s * s)[None]
    wrong = right.roll(1, dims=1)
    loss = DenseContrastiveLoss(0.1, symmetric=False)
    assert loss(z, z, wrong, ok).item() > 5 + loss(z, z, right, ok).item()


def test_dense_loss_ignores_locations_without_counterpart():
    s = 4
    z = _orthogonal_map(s)
    idx = torch.arange(s * s)[None]
    wrong = idx.roll(1, dims=1)
    ok = torch.zeros(1, s * s, dtype=torch.bool)
    ok[0, :4] = True
    mixed = torch.where(ok, idx, wrong)  # wrong targets only where invalid
    loss = DenseContrastiveLoss(0.1, symmetric=False)
    assert loss(z, z, mixed, ok).item() == pytest.approx(loss(z, z, idx, torch.ones_like(ok)).item(), rel=1e-5)


def test_dense_loss_negatives_include_other_slices():
    s = 2
    z = _orthogonal_map(s).repeat(2, 1, 1, 1)  # both slices share embeddings: cross-slice clashes
    idx = torch.arange(s * s)[None].repeat(2, 1)
    ok = torch.ones(2, s * s, dtype=torch.bool)
    loss = DenseContrastiveLoss(0.1, symmetric=False)(z, z, idx, ok).item()
    # the positive has a twin in the other slice with the same similarity: p = e^10 / (2 e^10 + 6)
    assert loss == pytest.approx(-math.log(math.exp(10) / (2 * math.exp(10) + 2 * (s * s - 1))), rel=1e-5)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        DenseContrastiveLoss(0.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        NTXentLoss(-1.0)


def test_known_rotation_gives_right_correspondence():
    s = 8
    x = torch.arange(s * s, dtype=torch.float32).view(1, 1, s, s)
    identity = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    rot90 = torch.tensor([[[0.0, -1, 0], [1, 0, 0]]])
    xq, xk = warp(x, identity, "nearest"), warp(x, rot90, "nearest")
    idx, ok = correspondence(identity, rot90, s)
    assert ok.all()
    assert torch.equal(xq.flatten(), xk.flatten()[idx[0]])


def test_random_views_correspond_where_valid():
    """Each valid location and its counterpart sample source points at most half a cell apart."""
    torch.manual_seed(0)
    s, n = 16, 6
    tq, tk = random_theta(n, WEAK), random_theta(n, WEAK)
    idx, ok = correspondence(tq, tk, s)
    centers = torch.cat([cell_centers(s), torch.ones(s * s, 1)], 1)
    src_q = torch.einsum("bij,lj->bli", tq, centers)
    src_k = torch.einsum("bij,blj->bli", tk, centers[idx])
    dist_px = (src_q - src_k).norm(dim=-1) * s / 2  # normalised units -> source pixels at size s
    max_zoom_out = 1 / WEAK.zoom[0]
    assert ok.float().mean() > 0.5
    assert dist_px[ok].max() <= math.sqrt(0.5) * max_zoom_out + 1e-4


def test_two_views_shapes_and_range():
    qv, kv, tq, tk = two_views(torch.rand(3, 1, 32, 32))
    assert qv.shape == kv.shape == (3, 1, 32, 32) and tq.shape == tk.shape == (3, 2, 3)
    assert torch.isfinite(qv).all() and not torch.equal(qv, kv)


def test_warp_labels_stays_in_class_set():
    y = torch.randint(0, 4, (2, 16, 16))
    out = warp_labels(y, random_theta(2, WEAK))
    assert out.dtype == torch.long and set(out.unique().tolist()) <= {0, 1, 2, 3}


def test_ntxent_perfect_pairs():
    z = F.normalize(torch.eye(4), dim=1)
    loss = NTXentLoss(0.1)(z, z).item()
    expected = -math.log(math.exp(10) / (math.exp(10) + 6 * math.exp(0)))
    assert loss == pytest.approx(expected, abs=1e-6)


def test_dice_ce_perfect_prediction_is_near_zero():
    y = torch.randint(0, 3, (2, 8, 8))
    logits = F.one_hot(y, 3).permute(0, 3, 1, 2).float() * 50
    assert DiceCELoss(3)(logits, y).item() < 1e-3
    assert DiceCELoss(3)(-logits, y).item() > 1.0


def test_consistency_targets_carry_no_gradient():
    a = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = cross_pseudo_loss(a, b)
    loss.backward()
    # the gradient w.r.t. a comes only from CE(a, argmax b): it equals that term's gradient
    a2 = a.detach().clone().requires_grad_(True)
    F.cross_entropy(a2, b.detach().argmax(1)).backward()
    assert torch.allclose(a.grad, a2.grad)


def test_sigmoid_rampup():
    assert sigmoid_rampup(0.0, 0.4) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.4, 0.4) == 1.0 and sigmoid_rampup(1.0, 0.4) == 1.0


def test_nnunet_augmentation_keeps_image_and_label_aligned():
    """The label is the image's own bright square: after nnU-Net's spatial and intensity transforms the
    warped label must still sit on the (still brighter) warped square, slice by slice."""
    from idealseg.transforms.augment import nnunet_augment

    torch.manual_seed(0)
    images = torch.full((64, 1, 48, 48), 0.2)
    images[:, :, 14:34, 10:30] = 0.9
    labels = (images[:, 0] > 0.5).long()
    out, warped = nnunet_augment(images, labels)
    assert out.shape == images.shape and warped.shape == labels.shape and torch.isfinite(out).all()
    inside = [out[i, 0][warped[i] == 1].mean() for i in range(64) if (warped[i] == 1).sum() > 20]
    outside = [out[i, 0][warped[i] == 0].mean() for i in range(64) if (warped[i] == 1).sum() > 20]
    assert len(inside) > 48 and all(a > b for a, b in zip(inside, outside, strict=True))
    assert not torch.equal(out, images)


def test_nnunet_augmentation_draws_each_transform_at_its_rate():
    from idealseg.transforms.augment import NNUNET_SPATIAL

    torch.manual_seed(0)
    theta = random_theta(4000, NNUNET_SPATIAL)
    scale = theta[:, :, :2].det().abs().sqrt()  # zoom changes the determinant; rotation and flips do not
    zoomed = ((scale - 1).abs() > 1e-4).float().mean()
    assert 0.17 < zoomed < 0.23  # nnU-Net scales with p = 0.2
