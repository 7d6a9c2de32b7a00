"""Cross Pseudo Supervision (Chen et al., CVPR 2021): two separately initialised U-Nets."""

from __future__ import annotations

import torch

from idealseg.losses.dice_ce import supervised_loss
from idealseg.methods.base import Method
from idealseg.methods.shared.two_stream import pad_labels, two_stream_losses
from idealseg.models.unet import UNet


class CPS(Method):
    """Two U-Nets initialised differently, each trained on the other's hard pseudo-labels."""
    name = "cps"
    reads = ("pseudo_threshold", "lambda_max", "rampup")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.net1 = UNet(cfg.num_classes, cfg.in_channels, channels=cfg.channels)
        self.net2 = UNet(cfg.num_classes, cfg.in_channels, channels=cfg.channels)
        self.loss = supervised_loss(cfg)

    def forward(self, images, labels, n_labeled, progress):
        x, y = self.augment(images, pad_labels(labels, len(images)))
        l1, l2 = self.net1(x), self.net2(x)
        return two_stream_losses(l1, l2, y, n_labeled, self.loss, self.cfg.lambda_max, self.cfg.rampup, progress,
                                 self.cfg.pseudo_threshold)

    @torch.no_grad()
    def streams_argmax(self, images):
        return {"stream1": self.net1(images).argmax(1), "stream2": self.net2(images).argmax(1)}

    @torch.no_grad()
    def predict(self, images):
        return 0.5 * (self.net1(images).softmax(1) + self.net2(images).softmax(1))

    def encoders(self):
        return [self.net1.encoder, self.net2.encoder]

