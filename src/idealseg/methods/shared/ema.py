"""The one exponential moving average of weights: Mean Teacher's and BCP's teachers, MoCo's key encoder."""

from __future__ import annotations

import torch


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float, buffers: str = "copy") -> None:
    """teacher <- decay x teacher + (1 - decay) x student, parameter by parameter. The one EMA every
    method uses. BatchNorm statistics (floating buffers) are copied from the student (`buffers="copy"`,
    SSL4MIS's Mean Teacher), averaged like the weights (`"average"`, BCP's public code, which averages
    the whole state dict) or left alone (`"none"`). Copying pairs the student's statistics with the
    teacher's older weights; averaging keeps the two consistent, which matters when the student moves
    fast, as after BCP's warm-up. Integer buffers (BatchNorm's step counter) are always copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    if buffers == "none":
        return
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if buffers == "average" and t.is_floating_point():
            t.mul_(decay).add_(s, alpha=1 - decay)
        else:
            t.copy_(s)
