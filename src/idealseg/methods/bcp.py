"""Bidirectional Copy-Paste (Bai et al., CVPR 2023), on the U-Net every other method uses.

Two stages inside one budget. First (`labeled_warmup` of the steps) a supervised U-Net is trained
on labelled slices copy-pasted into each other. Then a mean teacher, reset to that network, gives
hard pseudo-labels of the unlabelled slices, and the student learns from both mixing directions at
once: a labelled box pasted into an unlabelled slice (inward) and an unlabelled box pasted into a
labelled slice (outward). Pixels labelled by the teacher weigh `unlabeled_weight` (0.5 in the
paper), true labels 1, so the labelled and unlabelled slices share one training distribution
instead of two, which the paper finds is what closes the gap at 1 to 7 labelled patients.

As in the public code, the teacher labels a batch with BatchNorm in training mode (the batch's own
statistics), its EMA averages the BatchNorm statistics with the weights, and each pseudo-label
class is reduced to its largest connected component. The first version here copied the student's
statistics into an eval-mode teacher (SSL4MIS's Mean Teacher): at 3 labelled patients its
pseudo-labels fell to Dice 0.12-0.31 on unlabelled training slices, below the student's 0.53.

`warmup_mixing: none` makes the warm-up plain supervised steps on the labelled slices: at 7 labelled
patients the plain U-Net's predictions on the unlabelled slices beat BCP's pseudo-labels at equal
compute, so a teacher grown by plain supervised steps is the natural thing to try there
(docs/benchmarks.md, "BCP alone at its own price").

Differences from the public code, kept small on purpose: one poly learning-rate schedule over both
stages (the paper restarts it), self-training starts from the last warm-up step (the paper: from
the warm-up's best validation checkpoint), and the box is pasted into weakly augmented slices (the
same augmentation as every method here).
"""

from __future__ import annotations

import torch

from idealseg.methods.shared.paste import BidirectionalPaste
from idealseg.methods.shared.teacher_student import TeacherStudent
from idealseg.methods.shared.two_stream import pad_labels
from idealseg.transforms.components import largest_components_2d
from idealseg.transforms.mixing import box_mask, paste


class BCP(TeacherStudent):
    """Copy-paste warm-up on labelled slices, then mean-teacher self-training on mixed slices."""

    name = "bcp"
    reads = ("ema_decay", "labeled_warmup", "warmup_mixing", "unlabeled_weight")
    ema_buffers = "average"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("self_training", torch.tensor(False))  # in checkpoints, so resume keeps the stage

    def forward(self, images, labels, n_labeled, progress):
        x, y = self.augment(images, pad_labels(labels, len(images)))
        xl, yl, xu = x[:n_labeled], y[:n_labeled], x[n_labeled:]
        size = tuple(x.shape[-2:])
        if progress < self.cfg.labeled_warmup or len(xu) == 0:
            if self.cfg.warmup_mixing == "none":
                sup = self.loss(self.student(xl), yl)
                return {"loss": sup, "sup": sup}
            mask = box_mask(len(xl), size, device=x.device)
            other = torch.roll(torch.arange(len(xl), device=x.device), 1)
            mixed = paste(xl[other], xl, mask)
            sup = self.loss(self.student(mixed), paste(yl[other], yl, mask))
            return {"loss": sup, "sup": sup}
        if not bool(self.self_training):
            self.teacher.load_state_dict(self.student.state_dict())  # both stages start from the warm-up net
            self.self_training.fill_(True)
        with torch.no_grad():
            self.teacher.train()  # batch statistics, as the public code's teacher
            pseudo = largest_components_2d(self.teacher(xu).argmax(1), self.cfg.num_classes)
        n = min(len(xl), len(xu))
        xl, yl, xu, pseudo = xl[:n], yl[:n], xu[:n], pseudo[:n]
        pairs = BidirectionalPaste.draw(n, size, x.device)
        logits = self.student(pairs.mix(xl, xu))
        mix = self.loss(logits, pairs.mix(yl, pseudo), pairs.weights(self.cfg.unlabeled_weight))
        return {"loss": mix, "mix": mix}

    def on_step_end(self):
        if bool(self.self_training):  # the teacher is reset when self-training starts: no EMA before
            super().on_step_end()
