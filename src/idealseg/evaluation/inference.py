"""Whole-volume inference: slices in batches at the training input size, probabilities back to native size.

Only the uint8 mask leaves the device: the argmax is taken where the model ran, so a GPU does not
ship Z x C x H x W floats to the host for every volume.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from idealseg.data.slice_store import resize_slices


@torch.inference_mode()
def predict_volume(
    predict, image: np.ndarray, input_size: int, device: torch.device | str = "cpu",
    batch_size: int = 32, flip_tta: bool = False,
) -> np.ndarray:
    """Segment a [Z, H, W] volume in [0, 1]; returns the mask, uint8 [Z, H, W].

    `predict` maps [B, 1, S, S] slices to class probabilities [B, C, S, S] (a method's `predict`).
    Probabilities are resized back to the native H x W with bilinear interpolation before argmax;
    on CUDA the network runs under bf16 autocast, as in training.
    """
    z, h, w = image.shape
    device = torch.device(device)
    vol = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None]
    out = []
    for start in range(0, z, batch_size):
        x = resize_slices(vol[start : start + batch_size].to(device), input_size, "bilinear")
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            probs = predict(x)
            if flip_tta:
                probs = probs + predict(x.flip(-1)).flip(-1) + predict(x.flip(-2)).flip(-2)
        probs = probs.float()
        if probs.shape[-2:] != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        out.append(probs.argmax(1).to(torch.uint8).cpu())
    return torch.cat(out).numpy()
