"""The seam between a training method and the engine.

A method is an `nn.Module` whose `forward(images, labels, n_labeled, progress)` computes one
step's losses (so DDP can wrap it whole); it knows nothing about loops, devices or files.
The first `n_labeled` slices of `images` carry `labels`; `progress` in [0, 1] is how far through
its budget the run is (for ramp-ups).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from idealseg.config import RunConfig
from idealseg.config.method_registry import register
from idealseg.models.unet import Encoder
from idealseg.transforms.augment import nnunet_augment, weak_augment

_CLASSES: dict[str, type[Method]] = {}  # name -> class, filled as method classes are defined


class Method(nn.Module):
    """Base of every training method (see the module docstring): a step's losses, prediction, encoders."""
    name: ClassVar[str]
    stage: ClassVar[str] = "finetune"  # "pretrain" methods never read labels
    # the options it reads beyond those every run of its stage reads: the option table's "read by", the
    # CLI's help and the warning about an option no chosen method reads come from these declarations
    reads: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        """A subclass that sets `name` registers itself (config/method_registry.py): defining the class is
        all it takes for the CLI, the YAML checks and `get_method` to know it."""
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            register(cls.name, cls.stage, cls.reads, f"{cls.__module__}.{cls.__qualname__}")
            _CLASSES[cls.name] = cls

    def __init__(self, cfg: RunConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, images: torch.Tensor, labels: torch.Tensor, n_labeled: int, progress: float) -> dict:
        raise NotImplementedError

    def augment(self, images: torch.Tensor, labels: torch.Tensor | None):
        """The run's fine-tuning augmentation (`augmentation`) of slices [B, C, H, W] and their labels:
        one random transform per slice, the same for its label; every method calls this one."""
        if self.cfg.augmentation == "nnunet":
            return nnunet_augment(images, labels)
        return weak_augment(images, labels)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, C, H, W] for un-augmented slices [B, C, H, W]."""
        raise NotImplementedError

    @torch.no_grad()
    def streams_argmax(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each prediction stream's hard labels [B, H, W] for un-augmented slices, by name.

        Two-stream methods return both streams, teacher-student methods both networks: the trainer
        compares them with the true labels of unlabelled slices (never used in a loss) to show how
        good the pseudo-labels are and how much the streams disagree.
        """
        return {"model": self.predict(images).argmax(1)}

    def encoders(self) -> list[Encoder]:
        """Encoders that a pre-trained checkpoint initialises."""
        return []

    def on_step_end(self) -> None:
        """Called after each optimizer step (EMA teachers, momentum encoders)."""

    def load_pretrained(self, state: dict) -> None:
        """Initialise every encoder from a pre-trained encoder's weights (`--init`)."""
        for encoder in self.encoders():
            encoder.load_state_dict(state)
