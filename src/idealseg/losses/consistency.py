"""Bidirectional consistency (IDEAL fine-tuning, as in cross pseudo supervision)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cross_pseudo_loss(logits1: torch.Tensor, logits2: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """CE(p1, argmax p2) + CE(p2, argmax p1); the hard targets carry no gradient.

    With `threshold` > 0 a target pixel counts only where its stream's softmax peak reaches it (the
    mean is then over the counted pixels), FixMatch's remedy for confidently wrong pseudo-labels.
    Shapes: logits [B, C, H, W]; returns a scalar.
    """
    return _hard_ce(logits1, logits2, threshold) + _hard_ce(logits2, logits1, threshold)


def _hard_ce(student: torch.Tensor, teacher: torch.Tensor, threshold: float) -> torch.Tensor:
    with torch.autocast(student.device.type, enabled=False):  # float32 under mixed precision
        return _hard_ce_float32(student.float(), teacher.float(), threshold)


def _hard_ce_float32(student: torch.Tensor, teacher: torch.Tensor, threshold: float) -> torch.Tensor:
    conf, target = teacher.detach().softmax(1).max(1)
    if threshold <= 0:
        return F.cross_entropy(student.float(), target)
    keep = (conf >= threshold).float()
    ce = F.cross_entropy(student.float(), target, reduction="none")
    return (ce * keep).sum() / keep.sum().clamp_min(1.0)


def confident_pseudo_labels(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(hard labels [B, H, W], 0/1 weight of pixels whose softmax peak reaches `threshold`), no gradient."""
    with torch.no_grad():
        conf, labels = logits.detach().float().softmax(1).max(1)
    return labels, (conf >= threshold).float()


def sigmoid_rampup(progress: float, length: float = 1.0) -> float:
    """exp(-5 (1 - t/T)^2) for t < T, then 1 (Laine & Aila 2017); `progress` = t in units of T."""
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
