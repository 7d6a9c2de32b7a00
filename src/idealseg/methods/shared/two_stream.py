"""The two-stream step IDEAL (two decoders) and CPS (two networks) share, and the label padding every
semi-supervised batch needs."""

from __future__ import annotations

import torch

from idealseg.losses.consistency import cross_pseudo_loss, sigmoid_rampup
from idealseg.losses.dice_ce import DiceCELoss


def pad_labels(labels: torch.Tensor, total: int) -> torch.Tensor:
    """Labels of the labelled slices followed by zeros for the unlabelled ones (never read)."""
    return torch.cat([labels, labels.new_zeros(total - len(labels), *labels.shape[1:])])


def two_stream_losses(
    logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, n_labeled: int, loss: DiceCELoss,
    lambda_max: float, rampup: float, progress: float, threshold: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Mean Dice+CE of two streams on the labelled slices, plus lambda(t) x bidirectional hard
    pseudo-label CE on all slices: the step shared by IDEAL (two decoders) and CPS (two nets)."""
    y = labels[:n_labeled]
    sup = 0.5 * (loss(logits1[:n_labeled], y) + loss(logits2[:n_labeled], y))
    cons = cross_pseudo_loss(logits1, logits2, threshold)
    lam = lambda_max * sigmoid_rampup(progress, rampup)
    return {"loss": sup + lam * cons, "sup": sup, "cons": cons, "lambda": lam}
