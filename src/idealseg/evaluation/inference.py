"""Whole-volume inference, slice by slice, probabilities back on the volume's own grid before argmax.

Two geometries, as the run was trained (RunConfig.spacing_mm):
- no physical space: each slice resized to the input size, as SSL4MIS does;
- physical space: each slice resampled to the run's spacing, then a Gaussian-weighted sliding
  window of the input size over it (MONAI's `sliding_window_inference`, half-patch overlap as
  nnU-Net), so a slice of any field of view is seen at the scale the network learnt.
Only the uint8 mask leaves the device: the argmax is taken where the model ran, so a GPU does not
ship Z x C x H x W floats to the host for every volume.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from idealseg.data.components import largest_components
from idealseg.data.physical import oversize, resample, resampled_size
from idealseg.data.slice_store import resize_slices
from idealseg.errors import IdealsegError
from idealseg.runfolder.environment import autocast_dtype

OVERLAP = 0.5


@torch.inference_mode()
def predict_volume(
    predict, image: np.ndarray, input_size: int, device: torch.device | str = "cpu",
    batch_size: int = 32, flip_tta: bool = False, spacing: tuple[float, float] | None = None,
    target_spacing: float = 0.0, largest_component: bool = False, amp: bool = True,
) -> np.ndarray:
    """Segment a [Z, H, W] volume in [0, 1]; returns the mask, uint8 [Z, H, W].

    `predict` maps [B, 1, h, w] slices to class probabilities [B, C, h, w] (a method's `predict`).
    `target_spacing` > 0 (a run in physical space) needs the volume's in-plane `spacing` (H, W) in mm.
    Probabilities are interpolated bilinearly back to the native H x W before argmax. With `amp` (a
    run's own option) the network runs under autocast where training would (bfloat16 on CUDA and on
    CPUs with native bfloat16), so a model trained in bfloat16 is also served in it.
    `largest_component` keeps each class's largest 3D connected component (data/components.py).
    """
    z, h, w = image.shape
    device = torch.device(device)
    dtype = autocast_dtype(device, amp)
    if target_spacing and spacing is None:
        raise ValueError(f"this model works at {target_spacing:g} mm: the volume's in-plane spacing is needed")
    reason = oversize((h, w), tuple(spacing), target_spacing) if target_spacing else None
    if reason:
        raise ValueError(f"the model's spacing: {reason}: is the volume's spacing right?")
    grid = resampled_size((h, w), tuple(spacing), target_spacing) if target_spacing else (input_size, input_size)
    batch_size = max(1, min(batch_size, 2**24 // (grid[0] * grid[1])))  # probabilities stay near 1 GB
    vol = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None]

    def net(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        probs = predict(x)
        if flip_tta:
            probs = probs + predict(x.flip(-1)).flip(-1) + predict(x.flip(-2)).flip(-2)
        return probs.float()

    out = []
    for start in range(0, z, batch_size):
        chunk = vol[start : start + batch_size].to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if target_spacing:
                probs = sliding_window_inference(resample(chunk, grid, "bilinear"), (input_size, input_size),
                                                 batch_size, net, overlap=OVERLAP, mode="gaussian")
            else:
                probs = net(resize_slices(chunk, input_size, "bilinear"))
        probs = probs.float()
        if probs.shape[-2:] != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        # argmax over classes is about 7x faster with the classes innermost (channels_last) on a CPU,
        # and was a third of inference time with them outermost
        out.append(probs.contiguous(memory_format=torch.channels_last).argmax(1).to(torch.uint8).cpu())
    mask = torch.cat(out).numpy()
    return largest_components(mask, int(probs.shape[1])) if largest_component else mask


def in_plane(spacing) -> tuple[float, float] | None:
    """(H, W) spacing of a (Z, H, W) spacing, or None where it is unknown."""
    return None if spacing is None else (float(spacing[1]), float(spacing[2]))


def predict_case(method, cfg, case, device: torch.device | str, flip_tta: bool = False,
                 largest_component: bool = False, amp: bool | None = None) -> np.ndarray:
    """The mask of a dataset case (a CaseVolume) by a run's method, in the run's geometry and, unless
    `amp` says otherwise, its precision."""
    return predict_volume(method.predict, case.image, cfg.input_size, device, flip_tta=flip_tta,
                          spacing=in_plane(case.spacing), target_spacing=cfg.spacing_mm,
                          largest_component=largest_component, amp=cfg.amp if amp is None else amp)


def check_spacing(cfg, root, cases) -> None:
    """A run in physical space can only segment cases that know their spacing: say so before the first."""
    missing = [c.id for c in cases if not c.spacing]
    if cfg.spacing_mm and missing:
        raise IdealsegError(f"{root}: the run works at {cfg.spacing_mm:g} mm and {len(missing)} case(s) have no "
                            f"spacing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
