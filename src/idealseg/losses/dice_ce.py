"""Supervised segmentation loss: cross-entropy plus soft Dice over the foreground classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from idealseg.labels import IGNORE_LABEL


class DiceCELoss(nn.Module):
    """`lambda_ce` x CE(logits, y) + `lambda_dice` x (1 - mean soft Dice over classes 1..C-1).

    The Dice term is the squared-denominator soft Dice of V-Net (sum p^2 + sum y^2), pooled over the
    batch, averaged over the foreground classes only. SSL4MIS's `DiceLoss` also averages in the
    background class and weights the sum 0.5 CE + 0.5 Dice; both are exposed (`include_background`,
    and `lambda_ce` / `lambda_dice` as in MONAI's `DiceCELoss`), and the default (1, 1, foreground
    only) is what every committed result before the `sup_loss` ablation used.

    An optional per-pixel `weight` [B, H, W] (0 = ignore) serves the mixing methods: copy-paste weighs
    pseudo-labelled regions less, confidence thresholds zero out uncertain pixels. Shapes: logits
    [B, C, H, W], target [B, H, W] long; returns a scalar.

    Target pixels of IGNORE_LABEL (unannotated, nnU-Net's `ignore` label) count in neither term: CE's
    `ignore_index`, and a zero weight in the Dice sums, so they get no gradient; labels mixed by
    copy-paste keep the value, so every method's supervised term honours them through this loss. On
    targets without such pixels both terms are bit for bit what they were before.
    """

    def __init__(self, num_classes: int, smooth: float = 1e-5, lambda_ce: float = 1.0, lambda_dice: float = 1.0,
                 include_background: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.smooth = smooth
        self.lambda_ce = lambda_ce
        self.lambda_dice = lambda_dice
        self.include_background = include_background

    def dice(self, probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             include_background: bool | None = None) -> torch.Tensor:
        """1 - soft Dice, optionally per-pixel weighted; foreground classes unless `include_background`;
        IGNORE_LABEL pixels weigh 0 (a multiplication by exactly 1 elsewhere, so no host sync is needed)."""
        annotated = target != IGNORE_LABEL
        weight = annotated if weight is None else weight * annotated
        onehot = F.one_hot(target.masked_fill(~annotated, 0), self.num_classes).permute(0, 3, 1, 2).to(probs.dtype)
        w = weight[:, None].to(probs.dtype)
        probs, onehot = probs * w, onehot * w
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)  # = onehot.sum() unweighted
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        background = self.include_background if include_background is None else include_background
        return 1 - (dice if background else dice[1:]).mean()

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy, averaged over the annotated pixels, or over their weights when `weight` is given."""
        if weight is None:  # a batch with no annotated pixel: 0 (the mean over none is NaN), on the device
            ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_LABEL)
            return torch.where((target != IGNORE_LABEL).any(), ce, ce.new_zeros(()))
        ce = F.cross_entropy(logits.float(), target, reduction="none", ignore_index=IGNORE_LABEL)
        weight = weight * (target != IGNORE_LABEL)
        return (ce * weight).sum() / weight.sum().clamp_min(1e-6)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(logits.device.type, enabled=False):  # the loss in float32 under mixed precision
            logits = logits.float()
            ce = self.cross_entropy(logits, target, weight)
            return self.lambda_ce * ce + self.lambda_dice * self.dice(logits.softmax(1), target, weight)


def supervised_loss(cfg) -> DiceCELoss:
    """The labelled-slice loss a run's `sup_loss` names: `ce+dice` (CE + foreground Dice, every result
    before the ablation) or `ssl4mis` (0.5 CE + 0.5 Dice averaged over all classes, background too)."""
    if cfg.sup_loss == "ssl4mis":
        return DiceCELoss(cfg.num_classes, lambda_ce=0.5, lambda_dice=0.5, include_background=True)
    return DiceCELoss(cfg.num_classes)
