"""NT-Xent (SimCLR, Chen et al. 2020): the global contrastive loss on pooled embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from idealseg.losses.gather import gather_keys, global_mean


class NTXentLoss(nn.Module):
    """Each embedding's positive is the other view of its slice; the other 2B-2 are negatives.

    Args:
        temperature: tau > 0 (default 0.1).

    Shapes:
        z1, z2: [B, D], L2-normalised; returns a scalar.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {temperature}); try 0.1")
        self.temperature = temperature

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        b = z1.shape[0]
        z = torch.cat([z1, z2])  # [2B, D]
        keys, offset = gather_keys(z)  # every rank's views are negatives under torchrun
        with torch.autocast(z.device.type, enabled=False):  # temperature 0.1 needs float32 logits
            logits = z.float() @ keys.float().T / self.temperature  # [2B, world*2B]
        own = torch.arange(2 * b, device=z.device)
        logits[own, own + offset] = float("-inf")  # a view is not its own negative
        target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device) + offset
        return global_mean(F.cross_entropy(logits, target, reduction="sum"), 2 * b)
