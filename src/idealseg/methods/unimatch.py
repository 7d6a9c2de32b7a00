"""UniMatch (Yang et al., CVPR 2023): weak-to-strong consistency, widened in two directions.

The prediction on a weakly augmented unlabelled slice, kept only where its confidence reaches
`confidence` (0.95), supervises three other predictions of the same slice: two independently
strongly augmented views (photometric changes plus CutMix with another unlabelled slice, whose own
pseudo-label fills the pasted box), and a feature-perturbation stream (the decoder run on the
encoder features after channel dropout, p = 0.5). The pseudo-label is taken without gradient, so
only the perturbed predictions move towards it. Labelled slices get Dice + CE.

Weights as in the paper's medical code: (L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2, the
unlabelled terms a Dice loss over confident pixels and all classes, background included (early on
most confident pixels are background, and a foreground-only Dice would then teach nothing). The
CutMix partner is the next slice of the same unlabelled batch (the public code loads a second
batch), and the strong view uses the photometric transform every method here shares (brightness,
contrast, gamma, blur, noise), at a stronger setting.
"""

from __future__ import annotations

import torch
from torch import nn

from idealseg.losses.consistency import confident_pseudo_labels
from idealseg.losses.dice_ce import supervised_loss
from idealseg.methods.base import Method
from idealseg.methods.shared.strong_view import strong_view
from idealseg.methods.shared.two_stream import pad_labels
from idealseg.models.unet import UNet


class UniMatch(Method):
    """Weak-to-strong consistency with two strong CutMix views and a feature-perturbation stream."""
    name = "unimatch"
    reads = ("confidence",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.net = UNet(cfg.num_classes, cfg.in_channels, channels=cfg.channels)
        self.feature_dropout = nn.Dropout2d(0.5)
        self.loss = supervised_loss(cfg)

    def forward(self, images, labels, n_labeled, progress):
        x, y = self.augment(images, pad_labels(labels, len(images)))
        n = n_labeled
        xu = x[n:]
        features = self.net.encoder(x)
        logits = self.net.decoder(features)
        sup = self.loss(logits[:n], y[:n])
        if len(xu) == 0:
            return {"loss": sup, "sup": sup}
        fp = self.net.decoder([self.feature_dropout(f[n:]) for f in features])
        pseudo, weight = confident_pseudo_labels(logits[n:], self.cfg.confidence)
        views, targets, weights = [], [], []
        for _ in range(2):
            view, (target, keep) = strong_view(xu, [pseudo, weight])
            views.append(view)
            targets.append(target)
            weights.append(keep)
        strong_logits = self.net(torch.cat(views)).float().softmax(1)
        s1, s2 = strong_logits.chunk(2)
        loss_s1 = self.loss.dice(s1, targets[0], weights[0], include_background=True)
        loss_s2 = self.loss.dice(s2, targets[1], weights[1], include_background=True)
        loss_fp = self.loss.dice(fp.float().softmax(1), pseudo, weight, include_background=True)
        loss = (sup + 0.25 * loss_s1 + 0.25 * loss_s2 + 0.5 * loss_fp) / 2
        return {"loss": loss, "sup": sup, "strong": (loss_s1 + loss_s2) / 2, "fp": loss_fp,
                "confident": weight.mean()}

    @torch.no_grad()
    def predict(self, images):
        return self.net(images).softmax(1)

    def encoders(self):
        return [self.net.encoder]
