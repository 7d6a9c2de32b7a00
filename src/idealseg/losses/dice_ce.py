"""Supervised segmentation loss: cross-entropy plus soft Dice over the foreground classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DiceCELoss(nn.Module):
    """`lambda_ce` x CE(logits, y) + `lambda_dice` x (1 - mean soft Dice over classes 1..C-1).

    The Dice term is the squared-denominator soft Dice of V-Net (sum p^2 + sum y^2), pooled over the
    batch, averaged over the foreground classes only. SSL4MIS's `DiceLoss` also averages in the
    background class and weights the sum 0.5 CE + 0.5 Dice; both weightings are exposed, as MONAI's
    `DiceCELoss` exposes `lambda_ce` and `lambda_dice`, and the default (1, 1, foreground only) is what
    every committed result so far used.

    An optional per-pixel `weight` [B, H, W] (0 = ignore) serves the mixing methods: copy-paste weighs
    pseudo-labelled regions less, confidence thresholds zero out uncertain pixels. Shapes: logits
    [B, C, H, W], target [B, H, W] long; returns a scalar.
    """

    def __init__(self, num_classes: int, smooth: float = 1e-5, lambda_ce: float = 1.0, lambda_dice: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.smooth = smooth
        self.lambda_ce = lambda_ce
        self.lambda_dice = lambda_dice

    def dice(self, probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             include_background: bool = False) -> torch.Tensor:
        onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).to(probs.dtype)
        if weight is not None:
            w = weight[:, None].to(probs.dtype)
            probs, onehot = probs * w, onehot * w
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = (probs * probs).sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return 1 - (dice if include_background else dice[1:]).mean()

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
        if weight is None:
            return F.cross_entropy(logits.float(), target)
        ce = F.cross_entropy(logits.float(), target, reduction="none")
        return (ce * weight).sum() / weight.sum().clamp_min(1e-6)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        ce = self.cross_entropy(logits, target, weight)
        return self.lambda_ce * ce + self.lambda_dice * self.dice(logits.softmax(1), target, weight)
