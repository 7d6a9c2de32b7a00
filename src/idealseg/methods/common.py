"""Pieces of a step that several methods share."""

from __future__ import annotations

import torch

from idealseg.losses.consistency import cross_pseudo_loss, sigmoid_rampup
from idealseg.losses.dice_ce import DiceCELoss


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float, buffers: bool = True) -> None:
    """teacher <- decay x teacher + (1 - decay) x student, parameter by parameter; buffers (BatchNorm
    statistics) are copied, as Mean Teacher and BCP do. The one EMA every method uses."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    if buffers:
        for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
            t.copy_(s)


def pad_labels(labels: torch.Tensor, total: int) -> torch.Tensor:
    """Labels of the labelled slices followed by zeros for the unlabelled ones (never read)."""
    return torch.cat([labels, labels.new_zeros(total - len(labels), *labels.shape[1:])])


def two_stream_losses(
    logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, n_labeled: int, loss: DiceCELoss,
    lambda_max: float, rampup: float, progress: float,
) -> dict[str, torch.Tensor]:
    """Mean Dice+CE of two streams on the labelled slices, plus lambda(t) x bidirectional hard
    pseudo-label CE on all slices: the step shared by IDEAL (two decoders) and CPS (two nets)."""
    y = labels[:n_labeled]
    sup = 0.5 * (loss(logits1[:n_labeled], y) + loss(logits2[:n_labeled], y))
    cons = cross_pseudo_loss(logits1, logits2)
    lam = lambda_max * sigmoid_rampup(progress, rampup)
    return {"loss": sup + lam * cons, "sup": sup, "cons": cons}
