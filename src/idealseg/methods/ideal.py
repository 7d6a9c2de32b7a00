"""IDEAL fine-tuning: one shared encoder, two decoders of different design, each stream's hard
prediction supervising the other (bidirectional consistency), plus Dice + CE on labelled slices.

Two options carry what the field learned since the paper into this two-stream step, the dense
pre-trained encoder and the cross-stream supervision kept:
- `mixing: copy-paste` (after BCP): labelled and unlabelled slices are pasted into each other both
  ways; true labels weigh 1 and each stream learns the *other* stream's pseudo-labels (taken on the
  unmixed slice, no gradient) with a weight that ramps up to `unlabeled_weight` with lambda's
  schedule, so both kinds of pixel share a slice.
- `weak_to_strong: true` (after FixMatch/UniMatch): each stream's confident prediction on the weak
  view (softmax peak >= `confidence`) also supervises the other stream on a strong view of the same
  slice (stronger photometric changes plus CutMix), weighted by lambda(t) like the consistency.
"""

from __future__ import annotations

import torch
from torch import nn

from idealseg.losses.consistency import confident_pseudo_labels, sigmoid_rampup
from idealseg.losses.dice_ce import supervised_loss
from idealseg.methods.base import Method
from idealseg.methods.shared.paste import BidirectionalPaste
from idealseg.methods.shared.strong_view import strong_view
from idealseg.methods.shared.two_stream import pad_labels, two_stream_losses
from idealseg.models.unet import Decoder, Encoder, perturbation


class Ideal(Method):
    """IDEAL's fine-tuning: shared encoder, two different decoders supervising each other."""
    name = "ideal"
    reads = ("pseudo_threshold", "lambda_max", "rampup", "perturb1", "perturb2", "unlabeled_weight", "confidence",
             "mixing", "weak_to_strong")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.encoder = Encoder(cfg.in_channels, channels=cfg.channels)
        self.decoder1 = Decoder(cfg.num_classes, cfg.channels, upsampling="transposed")
        self.decoder2 = Decoder(cfg.num_classes, cfg.channels, upsampling="bilinear")
        self.perturb1 = perturbation(cfg.perturb1)
        self.perturb2 = perturbation(cfg.perturb2)
        self.loss = supervised_loss(cfg)

    def streams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both decoders' logits for `x`, each from the encoder features after its own perturbation."""
        features = self.encoder(x)
        return (
            self.decoder1([self.perturb1(f) for f in features]),
            self.decoder2([self.perturb2(f) for f in features]),
        )

    def forward(self, images, labels, n_labeled, progress):
        x, y = self.augment(images, pad_labels(labels, len(images)))
        if self.cfg.mixing == "copy-paste" and len(x) > n_labeled:
            return self._copy_paste(x, y, n_labeled, progress)
        l1, l2 = self.streams(x)
        cfg = self.cfg
        out = two_stream_losses(l1, l2, y, n_labeled, self.loss, cfg.lambda_max, cfg.rampup, progress,
                                cfg.pseudo_threshold)
        if cfg.weak_to_strong and len(x) > n_labeled:
            strong = self._weak_to_strong(x[n_labeled:], l1[n_labeled:], l2[n_labeled:])
            out.update(loss=out["loss"] + out["lambda"] * strong, strong=strong)
        return out

    def _weak_to_strong(self, xu: torch.Tensor, weak1: torch.Tensor, weak2: torch.Tensor) -> torch.Tensor:
        """Each stream's confident weak-view labels supervise the other stream on one strong view."""
        p1, k1 = confident_pseudo_labels(weak1, self.cfg.confidence)
        p2, k2 = confident_pseudo_labels(weak2, self.cfg.confidence)
        view, (p1, k1, p2, k2) = strong_view(xu, [p1, k1, p2, k2])
        s1, s2 = self.streams(view)
        return self.loss.cross_entropy(s1, p2, k2) + self.loss.cross_entropy(s2, p1, k1)

    def _copy_paste(self, x: torch.Tensor, y: torch.Tensor, n_labeled: int, progress: float) -> dict:
        """Both copy-paste directions of BCP, with the teacher replaced by the other stream. BCP trusts
        its teacher only after a labelled warm-up; here the pseudo-labelled pixels' weight ramps up
        with lambda's schedule instead (`rampup`), from 0 to `unlabeled_weight`."""
        xl, yl, xu = x[:n_labeled], y[:n_labeled], x[n_labeled:]
        n = min(len(xl), len(xu))
        xl, yl, xu = xl[:n], yl[:n], xu[:n]
        with torch.no_grad():
            u1, u2 = (logits.argmax(1) for logits in self.streams(xu))
        pairs = BidirectionalPaste.draw(n, tuple(x.shape[-2:]), x.device)
        w = self.cfg.unlabeled_weight * sigmoid_rampup(progress, self.cfg.rampup)
        weight = pairs.weights(w)
        m1, m2 = self.streams(pairs.mix(xl, xu))
        loss = 0.5 * (self.loss(m1, pairs.mix(yl, u2), weight) + self.loss(m2, pairs.mix(yl, u1), weight))
        return {"loss": loss, "mix": loss, "pseudo_weight": w}

    @torch.no_grad()
    def streams_argmax(self, images):
        l1, l2 = self.streams(images)
        return {"stream1": l1.argmax(1), "stream2": l2.argmax(1)}

    @torch.no_grad()
    def predict(self, images):
        l1, l2 = self.streams(images)
        return 0.5 * (l1.softmax(1) + l2.softmax(1))

    def encoders(self) -> list[nn.Module]:
        return [self.encoder]
