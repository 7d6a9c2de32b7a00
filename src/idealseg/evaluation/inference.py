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
from idealseg.data.normalize import check_volume
from idealseg.data.physical import oversize, resample, resampled_size
from idealseg.data.slice_store import resize_slices
from idealseg.errors import IdealsegError
from idealseg.runfolder.environment import autocast_dtype

OVERLAP = 0.5
SPACING_MISMATCH = 4.0  # a scan's in-plane spacing this many times finer or coarser than the model's is suspect


@torch.inference_mode()
def predict_volume(
    predict, image: np.ndarray, input_size: int, device: torch.device | str = "cpu",
    batch_size: int = 32, flip_tta: bool = False, spacing: tuple[float, float] | None = None,
    target_spacing: float = 0.0, largest_component: bool = False, amp: bool = True, scale_search: bool = False,
) -> np.ndarray:
    """Segment a [Z, H, W] volume in [0, 1]; returns the mask, uint8 [Z, H, W].

    `predict` maps [B, 1, h, w] slices to class probabilities [B, C, h, w] (a method's `predict`).
    `target_spacing` > 0 (a run in physical space) needs the volume's in-plane `spacing` (H, W) in mm.
    Probabilities are interpolated bilinearly back to the native H x W before argmax. With `amp` (a
    run's own option) the network runs under autocast where training would (bfloat16 on CUDA and on
    CPUs with native bfloat16), so a model trained in bfloat16 is also served in it.
    `largest_component` keeps each class's largest 3D connected component (data/components.py).
    `scale_search` (physical space only) first picks the scale the model is most confident at
    (`choose_scale`), for scans whose anatomy is not at the size their header's spacing implies.
    """
    spacing = _checked(image, spacing, target_spacing)
    if scale_search and target_spacing:
        factor = choose_scale(predict, image, input_size, device, spacing, target_spacing, amp)
        spacing = (spacing[0] * factor, spacing[1] * factor)
    z, h, w = image.shape
    device = torch.device(device)
    run = _Runner(predict, input_size, device, amp, flip_tta, (h, w), spacing, target_spacing, batch_size)
    vol = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None]
    out = []
    for start in range(0, z, run.batch_size):
        probs = run.probabilities(vol[start : start + run.batch_size].to(device))
        if probs.shape[-2:] != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        # argmax over classes is about 7x faster with the classes innermost (channels_last) on a CPU,
        # and was a third of inference time with them outermost
        out.append(probs.contiguous(memory_format=torch.channels_last).argmax(1).to(torch.uint8).cpu())
    mask = torch.cat(out).numpy()
    return largest_components(mask, int(probs.shape[1])) if largest_component else mask


def _checked(image: np.ndarray, spacing, target_spacing: float) -> tuple[float, float] | None:
    """The volume and its spacing as inference needs them, or the error that says what is wrong."""
    if image.ndim != 3:
        raise IdealsegError(f"expected a [Z, H, W] volume, got shape {tuple(image.shape)}")
    check_volume(image)
    if target_spacing and spacing is None:
        raise ValueError(f"this model works at {target_spacing:g} mm: the volume's in-plane spacing is needed")
    reason = oversize(image.shape[1:], tuple(spacing), target_spacing) if target_spacing else None
    if reason:
        raise ValueError(f"the model's spacing: {reason}: is the volume's spacing right?")
    return None if spacing is None else (float(spacing[0]), float(spacing[1]))


class _Runner:
    """The network over a chunk of slices, in the run's geometry: probabilities on the model's grid."""

    def __init__(self, predict, input_size: int, device: torch.device, amp: bool, flip_tta: bool,
                 shape: tuple[int, int], spacing, target_spacing: float, batch_size: int) -> None:
        self.predict, self.input_size, self.device, self.flip_tta = predict, input_size, device, flip_tta
        self.dtype = autocast_dtype(device, amp)
        self.physical = bool(target_spacing)
        self.grid = resampled_size(shape, tuple(spacing), target_spacing) if target_spacing else (input_size,
                                                                                                    input_size)
        self.batch_size = max(1, min(batch_size, 2**24 // (self.grid[0] * self.grid[1])))  # probabilities near 1 GB

    def net(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of network-sized inputs (channels-last: faster convolutions on the CPU too)."""
        x = x.contiguous(memory_format=torch.channels_last)
        probs = self.predict(x)
        if self.flip_tta:
            probs = probs + self.predict(x.flip(-1)).flip(-1) + self.predict(x.flip(-2)).flip(-2)
        return probs.float()

    def probabilities(self, chunk: torch.Tensor) -> torch.Tensor:
        """[B, C, *grid] class probabilities (summed over flips with flip_tta) of slices [B, 1, H, W]."""
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            if self.physical:
                probs = sliding_window_inference(resample(chunk, self.grid, "bilinear"),
                                                 (self.input_size, self.input_size), self.batch_size, self.net,
                                                 overlap=OVERLAP, mode="gaussian")
            else:
                probs = self.net(resize_slices(chunk, self.input_size, "bilinear"))
        return probs.float()


# Scale search. Another centre's scans may show the anatomy at another size than their header's spacing
# implies (a resampled export whose header kept the old spacing, a population of larger hearts): a model
# in physical space then sees every structure too large or too small. On 10 MS-CMRSeg bSSFP scans a model
# trained on ACDC scored 0.569 at the header's spacing, 0.856 at the best fixed multiple (0.6x) and 0.855
# with this search; ACDC validation 0.796 with it, 0.801 without (benchmarks/cross_centre.py).
SCALE_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3)  # multiples of the header's in-plane spacing
SCALE_MARGIN = 0.02  # the header's scale is kept unless another is this much more confident
SCALE_SLICES = 8  # slices of the volume's middle that the search looks at


def choose_scale(predict, image: np.ndarray, input_size: int, device, spacing: tuple[float, float],
                 target_spacing: float, amp: bool = True) -> float:
    """The multiple of `spacing` at which the model is most confident about what it calls foreground
    (the mean top-class probability over pixels not predicted as background), over SCALE_FACTORS, on
    up to SCALE_SLICES slices of the volume's middle; 1 unless another beats it by SCALE_MARGIN."""
    z = image.shape[0]
    lo, hi = int(z * 0.2), max(int(z * 0.2) + 1, int(np.ceil(z * 0.8)))
    picks = np.unique(np.linspace(lo, hi - 1, min(SCALE_SLICES, hi - lo)).round().astype(int))
    chunk = torch.from_numpy(np.ascontiguousarray(image[picks], dtype=np.float32))[:, None].to(device)
    confidence = {}
    for factor in SCALE_FACTORS:
        scaled = (spacing[0] * factor, spacing[1] * factor)
        if oversize(image.shape[1:], scaled, target_spacing):
            continue
        run = _Runner(predict, input_size, torch.device(device), amp, False, image.shape[1:], scaled,
                      target_spacing, len(picks))
        top, label = run.probabilities(chunk).max(1)
        foreground = label > 0
        confidence[factor] = float(top[foreground].mean()) if foreground.any() else 0.0
    best = max(confidence, key=confidence.get)
    return best if confidence[best] > confidence.get(1.0, 0.0) + SCALE_MARGIN else 1.0


def spacing_mismatch(spacing: tuple[float, float], target: float) -> str | None:
    """Why an in-plane `spacing` (mm) is suspect for a model trained at `target` mm (more than
    SPACING_MISMATCH times off: a header in the wrong unit, or a scan nothing like the training set's),
    or None. The anatomy is resampled to the model's scale either way; this says the scale may be a lie."""
    if not target or not spacing:
        return None
    ratio = max(max(s / target, target / s) for s in spacing)
    if ratio <= SPACING_MISMATCH:
        return None
    return (f"in-plane spacing {spacing[0]:.4g} x {spacing[1]:.4g} mm is {ratio:.1f}x off the {target:.4g} mm the "
            "model was trained at; check the header's spacing, or that the model suits this scan")


def in_plane(spacing) -> tuple[float, float] | None:
    """(H, W) spacing of a (Z, H, W) spacing, or None where it is unknown."""
    return None if spacing is None else (float(spacing[1]), float(spacing[2]))


def predict_case(method, cfg, case, device: torch.device | str, flip_tta: bool = False,
                 largest_component: bool = False, amp: bool | None = None, scale_search: bool = False) -> np.ndarray:
    """The mask of a dataset case (a CaseVolume) by a run's method, in the run's geometry and, unless
    `amp` says otherwise, its precision."""
    return predict_volume(method.predict, case.image, cfg.input_size, device, flip_tta=flip_tta,
                          spacing=in_plane(case.spacing), target_spacing=cfg.spacing_mm,
                          largest_component=largest_component, amp=cfg.amp if amp is None else amp,
                          scale_search=scale_search)


def check_spacing(cfg, root, cases) -> None:
    """A run in physical space can only segment cases that know their spacing: say so before the first."""
    missing = [c.id for c in cases if not c.spacing]
    if cfg.spacing_mm and missing:
        raise IdealsegError(f"{root}: the run works at {cfg.spacing_mm:g} mm and {len(missing)} case(s) have no "
                            f"spacing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
