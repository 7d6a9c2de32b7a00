"""The fixed global batch and network shared by the torchrun script and tests/engine/test_distributed.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from idealseg.losses.dense_contrastive import DenseContrastiveLoss
from idealseg.losses.global_contrastive import NTXentLoss
from idealseg.transforms.augment import CONTRASTIVE, correspondence, random_theta, warp

SIZE = 8  # the dense map is S x S at 32 px


def batch():
    """Two views of 4 slices and their correspondences, the same in every process."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32, generator=g)
    torch.manual_seed(0)
    tq, tk = random_theta(4, CONTRASTIVE), random_theta(4, CONTRASTIVE)
    index, valid = correspondence(tq, tk, SIZE)
    index2, valid2 = correspondence(tk, tq, SIZE)
    return warp(x, tq), warp(x, tk), index, valid, index2, valid2


class ContrastiveNet(nn.Module):
    """A small encoder with a dense and a global head whose forward returns IDEAL's two pre-training
    losses (no BatchNorm: PyTorch's SyncBatchNorm needs a GPU, so CPU processes cannot share it)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.enc = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1))
        self.dense = nn.Conv2d(16, 8, 1)
        self.glob = nn.Linear(16, 8)

    def forward(self, x1, x2, index, valid, index2, valid2):
        f1, f2 = self.enc(x1), self.enc(x2)
        z1, z2 = F.normalize(self.dense(f1), dim=1), F.normalize(self.dense(f2), dim=1)
        g1, g2 = (F.normalize(self.glob(f.mean((2, 3))), dim=1) for f in (f1, f2))
        return DenseContrastiveLoss(0.1)(z1, z2, index, valid, index2, valid2), NTXentLoss(0.1)(g1, g2)
