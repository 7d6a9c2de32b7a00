"""Cross Pseudo Supervision (Chen et al., CVPR 2021): two separately initialised U-Nets."""

from __future__ import annotations

import torch

from idealseg.data.augment import weak_augment
from idealseg.losses.consistency import cross_pseudo_loss, sigmoid_rampup
from idealseg.losses.dice_ce import DiceCELoss
from idealseg.methods.base import Method
from idealseg.models.unet import UNet


class CPS(Method):
    name = "cps"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.net1 = UNet(cfg.num_classes, channels=cfg.channels)
        self.net2 = UNet(cfg.num_classes, channels=cfg.channels)
        self.loss = DiceCELoss(cfg.num_classes)

    def forward(self, images, labels, n_labeled, progress):
        x, y = weak_augment(images, pad_labels(labels, len(images)))
        l1, l2 = self.net1(x), self.net2(x)
        y = y[:n_labeled]
        sup = 0.5 * (self.loss(l1[:n_labeled], y) + self.loss(l2[:n_labeled], y))
        cons = cross_pseudo_loss(l1, l2)
        lam = self.cfg.lambda_max * sigmoid_rampup(progress, self.cfg.rampup)
        return {"loss": sup + lam * cons, "sup": sup, "cons": cons}

    @torch.no_grad()
    def predict(self, images):
        return 0.5 * (self.net1(images).softmax(1) + self.net2(images).softmax(1))

    def encoders(self):
        return [self.net1.encoder, self.net2.encoder]


def pad_labels(labels: torch.Tensor, total: int) -> torch.Tensor:
    """Labels of the labelled slices followed by zeros for the unlabelled ones (never read)."""
    return torch.cat([labels, labels.new_zeros(total - len(labels), *labels.shape[1:])])
