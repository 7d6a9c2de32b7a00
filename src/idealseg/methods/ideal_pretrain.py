"""IDEAL pre-training: dense local contrastive learning on unlabelled slices (labels never read).

Two views of each slice go through the encoder and the 1x1-conv dense head; the loss pulls the
embeddings of corresponding locations together (correspondence from the known transforms).
`head="mlp"` swaps in a pooled MLP head with NT-Xent (the paper's head ablation), and
`global_weight > 0` adds that global term on top of the dense one.
"""

from __future__ import annotations

import copy

import torch

from idealseg.losses.dense_contrastive import DenseContrastiveLoss
from idealseg.losses.global_contrastive import NTXentLoss
from idealseg.methods.base import Method
from idealseg.methods.shared.ema import ema_update
from idealseg.models.heads import DenseProjectionHead, MLPHead
from idealseg.models.unet import Encoder
from idealseg.transforms.augment import correspondence, two_views


class IdealPretrain(Method):
    """IDEAL's pre-training: dense local contrast between corresponding locations of two views."""
    name = "ideal-pretrain"
    reads = ("temperature", "head", "dense_level", "momentum_key", "global_weight")
    stage = "pretrain"

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.head not in ("dense", "mlp"):
            raise ValueError(f"head must be 'dense' or 'mlp', got {cfg.head!r}")
        self.encoder = Encoder(cfg.in_channels, channels=cfg.channels)
        level_channels = cfg.channels[cfg.dense_level]
        self.dense_head = DenseProjectionHead(level_channels) if cfg.head == "dense" else None
        use_global = cfg.head == "mlp" or cfg.global_weight > 0
        self.global_head = MLPHead(cfg.channels[-1]) if use_global else None
        self.dense_loss = DenseContrastiveLoss(cfg.temperature)
        self.global_loss = NTXentLoss(cfg.temperature)
        self.key = None
        if cfg.momentum_key > 0:  # MoCo-style key side: an EMA copy, no gradient
            self.key = copy.deepcopy(torch.nn.ModuleDict({"encoder": self.encoder, "dense": self.dense_head}))
            for p in self.key.parameters():
                p.requires_grad_(False)

    def _embed(self, x, key_side: bool = False):
        enc = self.key["encoder"] if key_side else self.encoder
        head = self.key["dense"] if key_side else self.dense_head
        features = enc(x)
        dense = head(features[self.cfg.dense_level]) if head is not None else None
        return features, dense

    def forward(self, images, labels, n_labeled, progress):
        xq, xk, theta_q, theta_k = two_views(images)
        fq, zq = self._embed(xq)
        fk, zk = self._embed(xk)
        losses = {}
        total = 0.0
        if self.dense_head is not None:
            size = zq.shape[-1]
            idx_qk, ok_qk = correspondence(theta_q, theta_k, size)
            idx_kq, ok_kq = correspondence(theta_k, theta_q, size)
            if self.key is not None:
                with torch.no_grad():
                    _, kq = self._embed(xq, key_side=True)
                    _, kk = self._embed(xk, key_side=True)
                dense = 0.5 * (
                    self.dense_loss.one_way(zq, kk, idx_qk, ok_qk) + self.dense_loss.one_way(zk, kq, idx_kq, ok_kq)
                )
            else:
                dense = self.dense_loss(zq, zk, idx_qk, ok_qk, idx_kq, ok_kq)
            losses["dense"] = dense
            total = total + dense
            losses["valid"] = ok_qk.float().mean().detach()
        if self.global_head is not None:
            g = self.global_loss(self.global_head(fq[-1]), self.global_head(fk[-1]))
            losses["global"] = g
            total = total + (1.0 if self.dense_head is None else self.cfg.global_weight) * g
        losses["loss"] = total
        return losses

    def on_step_end(self):
        if self.key is not None:
            online = torch.nn.ModuleDict({"encoder": self.encoder, "dense": self.dense_head})
            ema_update(self.key, online, self.cfg.momentum_key, buffers="none")

    def encoders(self):
        return [self.encoder]
