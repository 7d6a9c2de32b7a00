"""The student-teacher pair Mean Teacher and BCP share."""

from __future__ import annotations

import copy

import torch

from idealseg.losses.dice_ce import supervised_loss
from idealseg.methods.base import Method
from idealseg.methods.shared.ema import ema_update
from idealseg.models.unet import UNet


class TeacherStudent(Method):
    """The student-teacher pair Mean Teacher and BCP share: a U-Net student trained by gradient, a frozen
    copy following it by EMA that gives the targets; the student predicts. Not a method by itself."""

    ema_buffers = "copy"  # how the teacher's BatchNorm statistics follow the student (see ema_update)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.student = UNet(cfg.num_classes, cfg.in_channels, channels=cfg.channels)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.loss = supervised_loss(cfg)

    def on_step_end(self):
        ema_update(self.teacher, self.student, self.cfg.ema_decay, self.ema_buffers)

    @torch.no_grad()
    def streams_argmax(self, images):
        return {"student": self.student(images).argmax(1), "teacher": self.teacher(images).argmax(1)}

    @torch.no_grad()
    def predict(self, images):
        return self.student(images).softmax(1)

    def encoders(self):
        return [self.student.encoder, self.teacher.encoder]
