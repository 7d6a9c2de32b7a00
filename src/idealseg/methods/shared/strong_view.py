"""The strong view of unlabelled slices that UniMatch and IDEAL's weak-to-strong term learn from."""

from __future__ import annotations

import torch

from idealseg.transforms.augment import PhotometricParams, photometric
from idealseg.transforms.mixing import box_mask, paste

STRONG = PhotometricParams(p=0.8, brightness=0.2, contrast=(0.6, 1.4), gamma=(0.6, 1.6), noise_std=0.08)
CUTMIX = {"area": (0.02, 0.4), "aspect": (0.3, 1 / 0.3), "p": 0.5}  # UniMatch's CutMix box


def strong_view(x: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A strongly augmented view of unlabelled slices [B, C, H, W]: stronger photometric changes, then
    CutMix with the next slice of the batch; `maps` ([B, H, W] pseudo-labels, confidences) are mixed
    with the same box, so each pixel keeps the target of the slice it came from."""
    strong = photometric(x, STRONG)
    partner = torch.roll(torch.arange(len(x), device=x.device), 1)
    box = box_mask(len(x), tuple(x.shape[-2:]), device=x.device, **CUTMIX)
    return paste(strong[partner], strong, box), [paste(m[partner], m, box) for m in maps]
