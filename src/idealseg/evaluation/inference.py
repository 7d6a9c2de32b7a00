"""Whole-volume inference: slice by slice at the training input size, logits back to native size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from idealseg.data.slice_store import resize_slices


@torch.no_grad()
def predict_volume(
    predict, image: np.ndarray, input_size: int, device: torch.device | str = "cpu",
    batch_size: int = 32, flip_tta: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment a [Z, H, W] volume in [0, 1]; returns (mask uint8 [Z, H, W], probs float32 [Z, C, H, W]).

    `predict` maps [B, 1, S, S] slices to class probabilities [B, C, S, S] (a method's `predict`).
    Probabilities are resized back to the native H x W with bilinear interpolation before argmax.
    """
    z, h, w = image.shape
    vol = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None]
    out = []
    for start in range(0, z, batch_size):
        x = resize_slices(vol[start : start + batch_size].to(device), input_size, "bilinear")
        probs = predict(x)
        if flip_tta:
            probs = probs + predict(x.flip(-1)).flip(-1) + predict(x.flip(-2)).flip(-2)
            probs = probs / 3
        if probs.shape[-2:] != (h, w):
            probs = F.interpolate(probs.float(), size=(h, w), mode="bilinear", align_corners=False)
        out.append(probs.float().cpu())
    probs = torch.cat(out)
    return probs.argmax(1).numpy().astype(np.uint8), probs.numpy()
