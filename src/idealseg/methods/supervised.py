"""Supervised-only U-Net on the labelled slices (the lower bound every SSL method must beat)."""

from __future__ import annotations

import torch

from idealseg.losses.dice_ce import supervised_loss
from idealseg.methods.base import Method
from idealseg.models.unet import UNet


class Supervised(Method):
    """A U-Net on the labelled slices alone: the baseline every semi-supervised method must beat."""
    name = "supervised"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.net = UNet(cfg.num_classes, cfg.in_channels, channels=cfg.channels)
        self.loss = supervised_loss(cfg)

    def forward(self, images, labels, n_labeled, progress):
        x, y = self.augment(images[:n_labeled], labels)
        sup = self.loss(self.net(x), y)
        return {"loss": sup, "sup": sup}

    @torch.no_grad()
    def predict(self, images):
        return self.net(images).softmax(1)

    def encoders(self):
        return [self.net.encoder]
