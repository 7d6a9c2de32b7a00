"""Physical space: slices resampled to one target spacing, so that a heart has the same size in
pixels whatever the scanner's field of view and matrix.

nnU-Net's answer to scans framed differently by different centres, in 2D: the target is the
dataset's median in-plane spacing; training slices are resampled to it once, padded or cropped to
a fixed canvas, and each step crops the network's patch from the canvas (a third of the labelled
patches centred on a random foreground pixel, nnU-Net's oversampling, so that small structures are
seen often enough). Inference resamples a slice to the target, slides the patch over it and
resamples the probabilities back to the slice's own grid (inference/predictor.py).

A dataset without spacing has no physical space: its slices are resized to the input as SSL4MIS
does, and a model trained on it only works on scans framed like its training set.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from idealseg.data.dataset import IGNORE_LABEL, Dataset
from idealseg.data.fingerprint import load_plan
from idealseg.errors import IdealsegError

FOREGROUND_SHARE = 1 / 3  # nnU-Net's oversample_foreground_percent
MAX_CANVAS_PATCHES = 2  # a canvas is at most twice the patch: the periphery of a huge field of view goes
FAR_OFF = 4.0  # a target spacing this many times finer or coarser than the data's is refused
NEAR = 2.0  # ... and beyond this it is said
MAX_SIDE = 4096  # a slice resampled to the target spacing larger than this is an error, not an allocation


def resolve_spacing(option: str, dataset: Dataset) -> float:
    """The run's in-plane spacing in mm from its `target_spacing` option: "auto" is the dataset's plan
    (data/fingerprint.py: the median of its in-plane spacings when every case knows its spacing, else 0,
    no physical space); "none" is 0; a number is that spacing, refused on a dataset without spacing."""
    option = str(option).strip().lower()
    known = [c.spacing for c in dataset.cases if c.spacing]
    everyone = bool(dataset.cases) and len(known) == len(dataset.cases)
    if option == "none":
        return 0.0
    if option == "auto":
        if known and not everyone:
            warnings.warn(f"{dataset.root}: {len(dataset.cases) - len(known)} of {len(dataset.cases)} cases have no "
                          "spacing, so this run resizes slices and its model will know no physical size "
                          "(--target-spacing none says so explicitly)", stacklevel=2)
        target = float(load_plan(dataset)["target_spacing_mm"] or 0.0)  # the plan `info` shows
    elif not everyone:
        raise IdealsegError(f"{dataset.root}: target_spacing {option} needs every case's spacing, and "
                            f"{len(dataset.cases) - len(known)} of {len(dataset.cases)} cases have none "
                            "(prepare it from NIfTI, or ssl4mis with --spacing-from)")
    else:
        target = float(option)
        _check_far_off(target, dataset, known)
    for case in dataset.cases if target else []:
        reason = oversize(tuple(case.shape[1:]), tuple(case.spacing[1:]), target)
        if reason:
            raise IdealsegError(f"{dataset.root}: case {case.id}: {reason}; choose a coarser --target-spacing")
    return target


def _check_far_off(target: float, dataset: Dataset, known: list) -> None:
    """A spacing far from the data's (a typo, mm for cm) turns every slice into a huge or a tiny image and
    validation into hours: beyond FAR_OFF times the median in-plane spacing it is refused, with numbers;
    beyond NEAR times it is said once."""
    median = float(np.median([min(s[1:]) for s in known]))
    ratio = max(target / median, median / target)
    finer = "finer" if target < median else "coarser"
    message = (f"--target-spacing {target:g} mm is {ratio:.1f}x {finer} than {dataset.root}'s median in-plane "
               f"spacing {median:.3g} mm")
    if ratio > FAR_OFF:
        raise IdealsegError(f"{message}; give a spacing within {FAR_OFF:g}x of it, or auto")
    if ratio > NEAR:
        warnings.warn(f"{message}: each slice is resampled {ratio:.1f}x; training and validation cost follows",
                      stacklevel=3)


def resampled_size(shape: tuple[int, int], spacing: tuple[float, float], target: float) -> tuple[int, int]:
    """(H, W) of a slice of `shape` at `spacing` (mm) once resampled to `target` mm (callers check
    MAX_SIDE, so that a header's absurd spacing is an error rather than an allocation)."""
    return tuple(max(1, round(n * s / target)) for n, s in zip(shape, spacing, strict=True))  # type: ignore[return-value]


def oversize(shape: tuple[int, int], spacing: tuple[float, float], target: float) -> str | None:
    """Why a slice of `shape` at `spacing` (mm) cannot be resampled to `target` mm (larger than
    MAX_SIDE on a side: a header's absurd spacing, or a target far too fine), or None when it can.
    Training, inference and predict's check of every scan all ask here before they allocate."""
    grid = resampled_size(shape, spacing, target)
    if max(grid) <= MAX_SIDE:
        return None
    return (f"at {target:g} mm its {shape[0]} x {shape[1]} slices of {spacing[0]:g} x {spacing[1]:g} mm would be "
            f"{grid[0]} x {grid[1]} pixels, more than {MAX_SIDE} on a side")


def resample(slices: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, *size]: bilinear for images and probabilities, nearest for labels.

    The one resampling of slices: training's slice store (to the input size, or to the target
    spacing), inference and its probabilities back to a scan's own grid all come through here, so
    that a model is served slices interpolated exactly as it was trained on. A slice already of
    `size` is returned as it is (no interpolation, not even an identity one).
    """
    if tuple(slices.shape[-2:]) == tuple(size):
        return slices
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(slices, size=size, mode=mode, **kwargs)


def canvas_size(dataset: Dataset, target: float, patch: int) -> int:
    """The square canvas training slices are stored on: the largest resampled slice side, rounded up to
    a multiple of 16 (the U-Net's), at least the patch and at most MAX_CANVAS_PATCHES patches."""
    sides = [max(resampled_size(tuple(c.shape[1:]), tuple(c.spacing[1:]), target)) for c in dataset.cases]
    side = 16 * math.ceil(max(sides) / 16)
    return int(min(max(side, patch), MAX_CANVAS_PATCHES * patch))


def centre(slices, size: int | tuple[int, int]):
    """Centre-crop or zero-pad the last two axes of [..., H, W] (a tensor or an array) to `size`
    (square when one number)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    shape = (*slices.shape[:-2], *size)
    out = slices.new_zeros(shape) if isinstance(slices, torch.Tensor) else np.zeros(shape, slices.dtype)
    src, dst = [], []
    for have, want in zip(slices.shape[-2:], size, strict=True):
        if have >= want:
            start = (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            start = (want - have) // 2
            src.append(slice(0, have))
            dst.append(slice(start, start + have))
    out[..., dst[0], dst[1]] = slices[..., src[0], src[1]]
    return out


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
