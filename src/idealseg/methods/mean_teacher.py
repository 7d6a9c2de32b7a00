"""Mean Teacher (Tarvainen & Valpola 2017): an EMA teacher's softmax supervises the student."""

from __future__ import annotations

import torch

from idealseg.losses.consistency import sigmoid_rampup
from idealseg.methods.shared.teacher_student import TeacherStudent
from idealseg.methods.shared.two_stream import pad_labels


class MeanTeacher(TeacherStudent):
    """The student matches the softmax of an EMA teacher that sees the same slice with noise added."""

    name = "mean-teacher"
    reads = ("lambda_max", "rampup", "ema_decay")

    def forward(self, images, labels, n_labeled, progress):
        x, y = self.augment(images, pad_labels(labels, len(images)))
        logits = self.student(x)
        noise = (torch.randn_like(x) * 0.1).clamp(-0.2, 0.2)
        with torch.no_grad():
            target = self.teacher(x + noise).softmax(1)
        sup = self.loss(logits[:n_labeled], y[:n_labeled])
        cons = ((logits.float().softmax(1) - target.float()) ** 2).mean()
        lam = self.cfg.lambda_max * sigmoid_rampup(progress, self.cfg.rampup)
        return {"loss": sup + lam * cons, "sup": sup, "cons": cons}
