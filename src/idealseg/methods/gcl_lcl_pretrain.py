"""Global + local contrastive pre-training after Chaitanya et al. (NeurIPS 2020), a baseline.

Global term: NT-Xent on pooled deepest features through an MLP head. Local term: region-level
contrast on a shallower encoder map pooled into a coarse grid of regions (regions of the same
source area are positives). Unlike the paper, only the encoder is pre-trained (the decoder is
fine-tuned from scratch); this keeps the comparison with IDEAL at equal pre-trained parts.
"""

from __future__ import annotations

import torch.nn.functional as F

from idealseg.losses.dense_contrastive import DenseContrastiveLoss
from idealseg.losses.global_contrastive import NTXentLoss
from idealseg.methods.base import Method
from idealseg.models.heads import DenseProjectionHead, MLPHead
from idealseg.models.unet import Encoder
from idealseg.transforms.augment import correspondence, two_views

LOCAL_LEVEL = 3
REGIONS = 4


class GclLclPretrain(Method):
    """The global + local contrastive pre-training baseline (encoder only)."""
    name = "gcl-lcl-pretrain"
    reads = ("temperature",)
    stage = "pretrain"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.encoder = Encoder(cfg.in_channels, channels=cfg.channels)
        self.global_head = MLPHead(cfg.channels[-1])
        self.local_head = DenseProjectionHead(cfg.channels[LOCAL_LEVEL])
        self.global_loss = NTXentLoss(cfg.temperature)
        self.local_loss = DenseContrastiveLoss(cfg.temperature)

    def forward(self, images, labels, n_labeled, progress):
        xq, xk, theta_q, theta_k = two_views(images)
        fq, fk = self.encoder(xq), self.encoder(xk)
        g = self.global_loss(self.global_head(fq[-1]), self.global_head(fk[-1]))
        rq = F.normalize(F.adaptive_avg_pool2d(self.local_head(fq[LOCAL_LEVEL]), REGIONS), dim=1)
        rk = F.normalize(F.adaptive_avg_pool2d(self.local_head(fk[LOCAL_LEVEL]), REGIONS), dim=1)
        idx_qk, ok_qk = correspondence(theta_q, theta_k, REGIONS)
        idx_kq, ok_kq = correspondence(theta_k, theta_q, REGIONS)
        local = self.local_loss(rq, rk, idx_qk, ok_qk, idx_kq, ok_kq)
        return {"loss": g + local, "global": g, "local": local}

    def encoders(self):
        return [self.encoder]
