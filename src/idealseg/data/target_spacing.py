"""Physical space: slices resampled to one target spacing, so that a heart has the same size in
pixels whatever the scanner's field of view and matrix.

nnU-Net's answer to scans framed differently by different centres, in 2D: the target is the
dataset's median in-plane spacing; training slices are resampled to it once, padded or cropped to
a fixed canvas, and each step crops the network's patch from the canvas (a third of the labelled
patches centred on a random foreground pixel, nnU-Net's oversampling, so that small structures are
seen often enough). Inference resamples a slice to the target, slides the patch over it and
resamples the probabilities back to the slice's own grid (inference/predictor.py).
This module decides the run's target spacing and the canvas; transforms/resample.py resamples,
transforms/patches.py crops.

A dataset without spacing has no physical space: its slices are resized to the input as SSL4MIS
does, and a model trained on it only works on scans framed like its training set.
"""

from __future__ import annotations

import math
import warnings

from idealseg.data.dataset import Dataset
from idealseg.data.fingerprint import load_plan
from idealseg.errors import IdealsegError
from idealseg.transforms.resample import oversize, resampled_size
from idealseg.transforms.spacing import in_plane, median_in_plane

MAX_CANVAS_PATCHES = 2  # a canvas is at most twice the patch: the periphery of a huge field of view goes
FAR_OFF = 4.0  # a target spacing this many times finer or coarser than the data's is refused
NEAR = 2.0  # ... and beyond this it is said


def resolve_spacing(option: str, dataset: Dataset, plan: dict | None = None) -> float:
    """The run's in-plane spacing in mm from its `target_spacing` option: "auto" is the dataset's plan
    (data/fingerprint.py: the median of its in-plane spacings when every case knows its spacing, else 0,
    no physical space); "none" is 0; a number is that spacing, refused on a dataset without spacing.
    `plan`: the dataset's plan where the caller has read it already (a run reads it once)."""
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
        plan = load_plan(dataset) if plan is None else plan  # the plan `info` shows
        target = float(plan["target_spacing_mm"] or 0.0)
    elif not everyone:
        raise IdealsegError(f"{dataset.root}: target_spacing {option} needs every case's spacing, and "
                            f"{len(dataset.cases) - len(known)} of {len(dataset.cases)} cases have none "
                            "(prepare it from NIfTI, or ssl4mis with --spacing-from)")
    else:
        target = float(option)
        _check_far_off(target, dataset, known)
    for case in dataset.cases if target else []:
        reason = oversize(tuple(case.shape[1:]), in_plane(case.spacing), target)
        if reason:
            raise IdealsegError(f"{dataset.root}: case {case.id}: {reason}; choose a coarser --target-spacing")
    return target


def _check_far_off(target: float, dataset: Dataset, known: list) -> None:
    """A spacing far from the data's (a typo, mm for cm) turns every slice into a huge or a tiny image and
    validation into hours: beyond FAR_OFF times the median in-plane spacing (the plan's, `median_in_plane`)
    it is refused, with numbers; beyond NEAR times it is said once."""
    median = median_in_plane(known)
    ratio = max(target / median, median / target)
    finer = "finer" if target < median else "coarser"
    message = (f"--target-spacing {target:g} mm is {ratio:.1f}x {finer} than {dataset.root}'s median in-plane "
               f"spacing {median:.3g} mm")
    if ratio > FAR_OFF:
        raise IdealsegError(f"{message}; give a spacing within {FAR_OFF:g}x of it, or auto")
    if ratio > NEAR:
        warnings.warn(f"{message}: each slice is resampled {ratio:.1f}x; training and validation cost follows",
                      stacklevel=3)


def canvas_size(dataset: Dataset, target: float, patch: int) -> int:
    """The square canvas training slices are stored on: the largest resampled slice side, rounded up to
    a multiple of 16 (the U-Net's), at least the patch and at most MAX_CANVAS_PATCHES patches."""
    sides = [max(resampled_size(tuple(c.shape[1:]), in_plane(c.spacing), target)) for c in dataset.cases]
    side = 16 * math.ceil(max(sides) / 16)
    return int(min(max(side, patch), MAX_CANVAS_PATCHES * patch))
