"""Projection heads for contrastive pre-training.

`DenseProjectionHead` is IDEAL's head: 1x1 convolutions keep the spatial map, so every location
gets its own embedding. `MLPHead` pools first (SimCLR / global CL, and the IDEAL ablation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DenseProjectionHead(nn.Module):
    """[B, C, S, S] -> [B, out, S, S], L2-normalised at every location."""

    def __init__(self, in_channels: int, hidden: int = 256, out: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True), nn.Conv2d(hidden, out, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


class MLPHead(nn.Module):
    """[B, C, S, S] -> global average pool -> MLP -> [B, out], L2-normalised."""

    def __init__(self, in_channels: int, hidden: int = 256, out: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x.mean(dim=(2, 3))), dim=1)
