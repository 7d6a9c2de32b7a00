"""Mean Teacher (Tarvainen & Valpola 2017): an EMA teacher's softmax supervises the student."""

from __future__ import annotations

import copy

import torch

from idealseg.data.augment import weak_augment
from idealseg.losses.consistency import sigmoid_rampup
from idealseg.losses.dice_ce import supervised_loss
from idealseg.methods.base import Method
from idealseg.methods.common import ema_update, pad_labels
from idealseg.models.unet import UNet


class MeanTeacher(Method):
    name = "mean-teacher"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.student = UNet(cfg.num_classes, channels=cfg.channels)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.loss = supervised_loss(cfg)

    def forward(self, images, labels, n_labeled, progress):
        x, y = weak_augment(images, pad_labels(labels, len(images)))
        logits = self.student(x)
        noise = (torch.randn_like(x) * 0.1).clamp(-0.2, 0.2)
        with torch.no_grad():
            target = self.teacher(x + noise).softmax(1)
        sup = self.loss(logits[:n_labeled], y[:n_labeled])
        cons = ((logits.float().softmax(1) - target.float()) ** 2).mean()
        lam = self.cfg.lambda_max * sigmoid_rampup(progress, self.cfg.rampup)
        return {"loss": sup + lam * cons, "sup": sup, "cons": cons}

    def on_step_end(self):
        ema_update(self.teacher, self.student, self.cfg.ema_decay)

    @torch.no_grad()
    def streams_argmax(self, images):
        return {"student": self.student(images).argmax(1), "teacher": self.teacher(images).argmax(1)}

    @torch.no_grad()
    def predict(self, images):
        return self.student(images).softmax(1)

    def encoders(self):
        return [self.student.encoder, self.teacher.encoder]
