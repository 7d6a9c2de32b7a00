"""The largest connected component of each class of a label map: the clean-up that removes a
segmentation's scattered false positives (nnU-Net's post-processing; BCP's pseudo-label filter).

A heart's structures are each one connected region, so any other region of the same class is an
error: a patch of liver or stomach that a network working on windows of the slice took for a
ventricle, which costs little Dice but sets HD95 to the distance to it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def largest_components(labels: np.ndarray, num_classes: int, per_slice: bool = False) -> np.ndarray:
    """`labels` with each foreground class reduced to its largest connected component (face
    connectivity), over the whole array, or slice by slice along the first axis (`per_slice`);
    the rest of the class becomes background."""
    if per_slice:
        return np.stack([largest_components(s, num_classes) for s in labels]) if len(labels) else labels.copy()
    out = labels.copy()
    for c in range(1, num_classes):
        components, n = ndimage.label(labels == c)
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return out


def largest_components_2d(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Hard labels [B, H, W] with each foreground class reduced, slice by slice, to its largest
    connected component: BCP's clean-up of its teacher's pseudo-labels, which removes the scattered
    false positives a young teacher makes around the heart."""
    return torch.from_numpy(largest_components(labels.cpu().numpy(), num_classes, per_slice=True)).to(labels.device)
