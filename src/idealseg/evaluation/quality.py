"""A per-scan quality score for segmentations without labels: which masks to check first.

The score is `foreground_confidence`: the mean top-class probability over the pixels the mask calls
foreground, taken from the very probabilities the mask was the argmax of, so at the in-plane scale the
scan was segmented at (after `predict`'s scale search), not at its header's. It needs no extra
inference and has no parameter. Measured (benchmarks/scripts/quality.py, benchmarks/results/quality)
as Spearman's rho with the true mean foreground Dice over three ACDC-trained runs: 0.82 to 0.88 on 10
scans of another centre (MS-CMRSeg bSSFP), 0.70 to 0.77 on 20 ACDC validation scans. The same
confidence at the header's spacing, a mask's scale it was not made at, gave 0.54 to 0.84 on the other
centre: the score must come from the probabilities the mask came from.

`perturbation_agreement` (mean foreground Dice between the mask and the masks of the flipped scan and
of 0.9x and 1.1x the chosen spacing) was the best on ACDC for two runs of three (0.67 to 0.86) but
weaker on the other centre (0.55 to 0.81), for three more inferences a scan; it is kept for callers
that can afford them. With 10 scans the 95 % intervals of either span about 0.5: neither is shown to
beat the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from idealseg.evaluation.metrics import mean_foreground_dice


def foreground_confidence(probs: np.ndarray) -> float:
    """Mean top-class probability over the pixels predicted foreground (class > 0), of class
    probabilities [Z, C, H, W] (a single slice [C, H, W] is taken as one slice); 0 where no pixel
    is predicted foreground (nothing found is the least trustworthy mask)."""
    probs = np.asarray(probs)
    if probs.ndim == 3:
        probs = probs[None]
    top, label = probs.max(1), probs.argmax(1)
    foreground = label > 0
    return float(top[foreground].mean()) if foreground.any() else 0.0


class ConfidenceTally:
    """`foreground_confidence` of a volume whose probabilities arrive chunk by chunk (the predictor's
    slices), kept on the device as a sum and a count: the probabilities are never gathered whole."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, probs: torch.Tensor, passes: int = 1) -> None:
        """One chunk of class probabilities [B, C, H, W], summed over `passes` flips (flip-TTA)."""
        top, label = probs.max(1)
        foreground = label > 0
        self.total += float(top[foreground].sum()) / passes
        self.count += int(foreground.sum())

    def value(self) -> float:
        """The mean top-class probability over foreground pixels; 0 where none was found."""
        return self.total / self.count if self.count else 0.0


def perturbation_agreement(mask: np.ndarray, perturbed: Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]],
                           num_classes: int) -> float:
    """Mean foreground Dice between a label volume `mask` and the masks of the same scan under
    test-time perturbations (given, or a callable that makes them), in [0, 1]: 1 when every
    perturbation gives the same mask."""
    others = perturbed() if callable(perturbed) else perturbed
    if not len(others):
        raise ValueError("perturbation_agreement needs at least one perturbed mask")
    return float(np.mean([mean_foreground_dice(mask, p, num_classes, absent=1.0) for p in others]))
