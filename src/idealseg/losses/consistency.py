"""Bidirectional consistency (IDEAL fine-tuning, as in cross pseudo supervision)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cross_pseudo_loss(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """CE(p1, argmax p2) + CE(p2, argmax p1); the hard targets carry no gradient.

    Shapes: logits [B, C, H, W]; returns a scalar.
    """
    y1 = logits1.detach().argmax(1)
    y2 = logits2.detach().argmax(1)
    return F.cross_entropy(logits1.float(), y2) + F.cross_entropy(logits2.float(), y1)


def sigmoid_rampup(progress: float, length: float = 1.0) -> float:
    """exp(-5 (1 - t/T)^2) for t < T, then 1 (Laine & Aila 2017); `progress` = t in units of T."""
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
