"""Bidirectional copy-paste: labelled and unlabelled slices pasted into each other, both ways.

BCP's self-training and IDEAL's `mixing: copy-paste` build the same mixed batch (only the source of
the pseudo-labels differs: BCP's teacher, IDEAL's other stream). Drawing the boxes once and mixing
every tensor of the step through the same object keeps images, labels and weights aligned pixel by
pixel, which is what the mixing is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from idealseg.transforms.mixing import box_mask, paste


@dataclass(frozen=True)
class BidirectionalPaste:
    """The boxes and pairing of one step: an inward box pastes labelled slice i into unlabelled slice i,
    an outward box pastes unlabelled slice i - 1 into labelled slice i - 1 (`other`), so that the two
    directions mix different pairs."""

    inward: torch.Tensor
    outward: torch.Tensor
    other: torch.Tensor

    @classmethod
    def draw(cls, n: int, size: tuple[int, int], device: torch.device | str) -> BidirectionalPaste:
        """Boxes for `n` pairs of slices of `size`; the inward box is drawn first (the random stream's
        order is part of a run's reproducibility)."""
        other = torch.roll(torch.arange(n, device=device), 1)
        inward, outward = box_mask(n, size, device=device), box_mask(n, size, device=device)
        return cls(inward, outward, other)

    def mix(self, labelled: torch.Tensor, unlabelled: torch.Tensor) -> torch.Tensor:
        """[2n, ...]: the inward mixes (a labelled box in an unlabelled slice), then the outward ones (an
        unlabelled box in a labelled slice). Images [n, C, H, W], labels or maps [n, H, W] alike."""
        return torch.cat([paste(labelled, unlabelled, self.inward),
                          paste(unlabelled[self.other], labelled[self.other], self.outward)])

    def weights(self, unlabelled_weight: float | torch.Tensor) -> torch.Tensor:
        """[2n, H, W] per-pixel loss weights: 1 where the label is true, `unlabelled_weight` where it is
        a pseudo-label."""
        ones = torch.ones_like(self.inward)
        return self.mix(ones, unlabelled_weight * ones)
