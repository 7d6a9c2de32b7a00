"""IDEAL fine-tuning: one shared encoder, two decoders of different design, each stream's hard
prediction supervising the other (bidirectional consistency), plus Dice + CE on labelled slices.
"""

from __future__ import annotations

import torch
from torch import nn

from idealseg.data.augment import weak_augment
from idealseg.losses.dice_ce import DiceCELoss
from idealseg.methods.base import Method
from idealseg.methods.common import pad_labels, two_stream_losses
from idealseg.models.unet import Decoder, Encoder, perturbation


class Ideal(Method):
    name = "ideal"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.encoder = Encoder(channels=cfg.channels)
        self.decoder1 = Decoder(cfg.num_classes, cfg.channels, upsampling="transposed")
        self.decoder2 = Decoder(cfg.num_classes, cfg.channels, upsampling="bilinear")
        self.perturb1 = perturbation(cfg.perturb1)
        self.perturb2 = perturbation(cfg.perturb2)
        self.loss = DiceCELoss(cfg.num_classes)

    def streams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        return (
            self.decoder1([self.perturb1(f) for f in features]),
            self.decoder2([self.perturb2(f) for f in features]),
        )

    def forward(self, images, labels, n_labeled, progress):
        x, y = weak_augment(images, pad_labels(labels, len(images)))
        l1, l2 = self.streams(x)
        return two_stream_losses(l1, l2, y, n_labeled, self.loss, self.cfg.lambda_max, self.cfg.rampup, progress)

    @torch.no_grad()
    def predict(self, images):
        l1, l2 = self.streams(images)
        return 0.5 * (l1.softmax(1) + l2.softmax(1))

    def encoders(self) -> list[nn.Module]:
        return [self.encoder]
