"""Pieces that several methods share: the two-stream step, strong views, the EMA, the student-teacher pair."""

from __future__ import annotations

import copy

import torch

from idealseg.data.augment import PhotometricParams, photometric
from idealseg.data.components import largest_components
from idealseg.data.mixing import box_mask, paste
from idealseg.losses.consistency import cross_pseudo_loss, sigmoid_rampup
from idealseg.losses.dice_ce import DiceCELoss, supervised_loss
from idealseg.methods.base import Method
from idealseg.models.unet import UNet


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float, buffers: str = "copy") -> None:
    """teacher <- decay x teacher + (1 - decay) x student, parameter by parameter. The one EMA every
    method uses. BatchNorm statistics (floating buffers) are copied from the student (`buffers="copy"`,
    SSL4MIS's Mean Teacher), averaged like the weights (`"average"`, BCP's public code, which averages
    the whole state dict) or left alone (`"none"`). Copying pairs the student's statistics with the
    teacher's older weights; averaging keeps the two consistent, which matters when the student moves
    fast, as after BCP's warm-up. Integer buffers (BatchNorm's step counter) are always copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)
    if buffers == "none":
        return
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if buffers == "average" and t.is_floating_point():
            t.mul_(decay).add_(s, alpha=1 - decay)
        else:
            t.copy_(s)


def largest_components_2d(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Hard labels [B, H, W] with each foreground class reduced, slice by slice, to its largest
    connected component: BCP's clean-up of its teacher's pseudo-labels, which removes the scattered
    false positives a young teacher makes around the heart."""
    return torch.from_numpy(largest_components(labels.cpu().numpy(), num_classes, per_slice=True)).to(labels.device)


STRONG = PhotometricParams(p=0.8, brightness=0.2, contrast=(0.6, 1.4), gamma=(0.6, 1.6), noise_std=0.08)
CUTMIX = {"area": (0.02, 0.4), "aspect": (0.3, 1 / 0.3), "p": 0.5}  # UniMatch's CutMix box


def strong_view(x: torch.Tensor, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A strongly augmented view of unlabelled slices [B, C, H, W]: stronger photometric changes, then
    CutMix with the next slice of the batch; `maps` ([B, H, W] pseudo-labels, confidences) are mixed
    with the same box, so each pixel keeps the target of the slice it came from."""
    strong = photometric(x, STRONG)
    partner = torch.roll(torch.arange(len(x), device=x.device), 1)
    box = box_mask(len(x), tuple(x.shape[-2:]), device=x.device, **CUTMIX)
    return paste(strong[partner], strong, box), [paste(m[partner], m, box) for m in maps]


def pad_labels(labels: torch.Tensor, total: int) -> torch.Tensor:
    """Labels of the labelled slices followed by zeros for the unlabelled ones (never read)."""
    return torch.cat([labels, labels.new_zeros(total - len(labels), *labels.shape[1:])])


def two_stream_losses(
    logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, n_labeled: int, loss: DiceCELoss,
    lambda_max: float, rampup: float, progress: float, threshold: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Mean Dice+CE of two streams on the labelled slices, plus lambda(t) x bidirectional hard
    pseudo-label CE on all slices: the step shared by IDEAL (two decoders) and CPS (two nets)."""
    y = labels[:n_labeled]
    sup = 0.5 * (loss(logits1[:n_labeled], y) + loss(logits2[:n_labeled], y))
    cons = cross_pseudo_loss(logits1, logits2, threshold)
    lam = lambda_max * sigmoid_rampup(progress, rampup)
    return {"loss": sup + lam * cons, "sup": sup, "cons": cons, "lambda": lam}


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
