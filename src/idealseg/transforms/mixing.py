"""Mixing two batches of slices with a box mask: copy-paste (BCP) and CutMix (UniMatch).

The same mask mixes the images and their (pseudo-)labels, so every mixed pixel keeps the label of
the slice it came from; methods weigh the two origins through the mask.
"""

from __future__ import annotations

import torch


def box_mask(n: int, size: tuple[int, int], area: tuple[float, float] = (4 / 9, 4 / 9),
             aspect: tuple[float, float] = (1.0, 1.0), p: float = 1.0, device="cpu") -> torch.Tensor:
    """[n, H, W] float masks: 1 inside one random box per slice, 0 elsewhere.

    The box covers a fraction of the slice drawn from `area` with height/width drawn from `aspect`;
    the defaults give BCP's fixed box of 2/3 x 2/3 of each side. With probability 1 - p a slice gets
    no box (an all-zero mask), as CutMix applies with p = 0.5 in UniMatch.
    """
    h, w = size
    frac = torch.empty(n, device=device).uniform_(*area)
    ratio = torch.exp(torch.empty(n, device=device).uniform_(*torch.log(torch.tensor(aspect)).tolist()))
    bh = (torch.sqrt(frac * ratio) * h).round().clamp(1, h).long()
    bw = (torch.sqrt(frac / ratio) * w).round().clamp(1, w).long()
    top = (torch.rand(n, device=device) * (h - bh + 1)).long()
    left = (torch.rand(n, device=device) * (w - bw + 1)).long()
    rows = torch.arange(h, device=device)[None, :, None]
    cols = torch.arange(w, device=device)[None, None, :]
    t, lft, bh, bw = (v[:, None, None] for v in (top, left, bh, bw))
    inside = (rows >= t) & (rows < t + bh) & (cols >= lft) & (cols < lft + bw)
    on = (torch.rand(n, device=device) < p)[:, None, None]
    return (inside & on).float()


def paste(inside: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`inside` where mask is 1, `outside` elsewhere; images [B, C, H, W], labels or maps [B, H, W]."""
    m = (mask[:, None] if inside.dim() == 4 else mask).bool()
    return torch.where(m, inside, outside)
