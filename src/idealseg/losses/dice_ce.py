"""Supervised segmentation loss: cross-entropy plus soft Dice over foreground classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DiceCELoss(nn.Module):
    """CE(logits, y) + (1 - mean soft Dice over classes 1..C-1), as SSL4MIS trains its U-Nets.

    Shapes: logits [B, C, H, W], target [B, H, W] long; returns a scalar.
    """

    def __init__(self, num_classes: int, smooth: float = 1e-5):
        super().__init__()
        self.num_classes = num_classes
        self.smooth = smooth

    def dice(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).to(probs.dtype)
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = (probs * probs).sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return 1 - dice[1:].mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return F.cross_entropy(logits, target) + self.dice(logits.softmax(1), target)
