"""The network's training patches cropped from the slice store's canvases, with nnU-Net's foreground
oversampling: a third of the labelled patches centred on a random foreground pixel, so that small
structures are seen often enough."""

from __future__ import annotations

import torch

from idealseg.labels import IGNORE_LABEL

FOREGROUND_SHARE = 1 / 3  # nnU-Net's oversample_foreground_percent


def crop_patches(
    images: torch.Tensor, labels: torch.Tensor, n_labeled: int, patch: int, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random patch x patch crops of canvases: images [B, C, S, S] (all channels alike) and the first
    `n_labeled` slices' labels [n, S, S]. A labelled slice is centred on a random foreground pixel with probability
    FOREGROUND_SHARE (where it has any); every other crop is uniform over the canvas. The draws come
    from torch's global generator unless one is given, so that checkpoints (which keep each rank's
    global state) resume the same crops; canvases of the patch's size are returned as they are."""
    size = images.shape[-1]
    if size == patch:
        return images, labels
    span = size - patch
    corners = torch.randint(0, span + 1, (len(images), 2), generator=generator)
    for i in range(n_labeled):
        if float(torch.rand(1, generator=generator)) < FOREGROUND_SHARE:
            fg = torch.nonzero((labels[i] > 0) & (labels[i] != IGNORE_LABEL))  # unannotated is no foreground
            if len(fg):
                y, x = fg[int(torch.randint(0, len(fg), (1,), generator=generator))].tolist()
                corners[i, 0] = min(max(y - patch // 2, 0), span)
                corners[i, 1] = min(max(x - patch // 2, 0), span)
    out_images = torch.stack([img[:, y : y + patch, x : x + patch] for img, (y, x) in zip(images, corners.tolist(),
                                                                                         strict=True)])
    out_labels = torch.stack([lab[y : y + patch, x : x + patch] for lab, (y, x) in
                              zip(labels, corners[:n_labeled].tolist(), strict=False)]) if n_labeled else labels
    return out_images, out_labels
