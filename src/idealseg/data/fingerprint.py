"""A dataset's fingerprint (spacing, field of view, intensities) and the one plan derived from it.

nnU-Net's answer to scans framed differently by different centres: measure the dataset, choose a
target spacing (the median in-plane spacing), and size the network's patch in millimetres. The
plan is decided here once: `prepare` writes it into the dataset folder (plan.json), each run copies
it into its own folder, and `idealseg info` and training (data/target_spacing.py) both read it, so the
spacing a user is shown is the spacing a run trains at.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from idealseg.atomic import atomic_file
from idealseg.config.profiles import profile_input_sizes
from idealseg.data.channels import as_channels
from idealseg.data.dataset import Dataset
from idealseg.errors import InputError
from idealseg.transforms.spacing import in_plane, in_plane_values, median_in_plane

PLAN = "plan.json"


def fingerprint(dataset: Dataset) -> dict:
    """Spacing and field-of-view distributions over the cases that know their spacing, and
    intensity statistics of the stored (normalised) images of the training cases: over all their
    voxels and, for a dataset of several channels, of each channel (each was normalised on its own)."""
    fp = _geometry(dataset)
    images = [as_channels(dataset.load(c.id).image) for c in dataset.split("train")[:20]]
    if images:
        fp["intensity"] = _intensity(np.concatenate([i.ravel() for i in images]))
        if dataset.channels > 1:
            fp["intensity_per_channel"] = [_intensity(np.concatenate([i[k].ravel() for i in images]))
                                           for k in range(dataset.channels)]
    return fp


def _intensity(pixels: np.ndarray) -> dict:
    return {"mean": float(pixels.mean()), "std": float(pixels.std()),
            "p0.5": float(np.percentile(pixels, 0.5)), "p99.5": float(np.percentile(pixels, 99.5))}


def _geometry(dataset: Dataset) -> dict:
    """The fingerprint's part read from dataset.json alone (no image loaded): what the plan needs."""
    known = [c for c in dataset.cases if c.spacing]
    fp: dict = {"cases": len(dataset.cases), "with_spacing": len(known), "channels": dataset.channels,
                "normalization": dataset.info.get("normalization", "unknown")}
    if known:
        fov = np.array([np.multiply(c.shape[1:], in_plane(c.spacing)) for c in known], dtype=float)
        fp["in_plane_spacing_mm"] = _stats(in_plane_values(c.spacing for c in known))
        fp["slice_spacing_mm"] = _stats(np.array([c.spacing[0] for c in known], dtype=float))
        fp["field_of_view_mm"] = _stats(fov.max(1))
    return fp


def _stats(values: np.ndarray) -> dict:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def make_plan(dataset: Dataset) -> dict[str, Any]:
    """The dataset's plan: target in-plane spacing (the median, as nnU-Net; None unless every case
    knows its spacing: slices are then resized to the input and a model knows no physical size), what
    each profile's square patch covers at it against the median field of view, the intensity
    normalisation of each channel (each normalised on its own), and the classes."""
    fp = _geometry(dataset)
    plan: dict[str, Any] = {"dataset_json_sha256": _digest(dataset), "target_spacing_mm": None, "patch": {},
                            "normalization": [dataset.info.get("normalization", "percentile")] * dataset.channels,
                            "classes": list(dataset.classes)}
    if "in_plane_spacing_mm" in fp and fp["with_spacing"] == fp["cases"] > 0:
        target, fov = median_in_plane(c.spacing for c in dataset.cases), fp["field_of_view_mm"]["median"]
        plan["target_spacing_mm"] = target
        plan["patch"] = {name: {"pixels": size, "covers_mm": size * target, "median_fov_mm": fov,
                                "whole_slice": size * target >= fov} for name, size in profile_input_sizes().items()}
    return plan


def write_plan(folder: Path) -> None:
    """Write the plan of the dataset being prepared in `folder` (its writer's own folder, before it is
    marked and moved into place), so that every reader finds the same plan."""
    with atomic_file(folder / PLAN) as f:
        json.dump(make_plan(Dataset(folder)), f, indent=1)


def load_plan(dataset: Dataset) -> dict[str, Any]:
    """The dataset's plan.json, or for a dataset prepared before plans were written (or whose
    dataset.json changed since), its plan computed now and not written: idealseg never writes into a
    folder it may not own."""
    path = Path(dataset.root) / PLAN
    if not path.is_file():
        return make_plan(dataset)
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable plan ({exc}); prepare the dataset again") from None
    target = plan.get("target_spacing_mm", 0) if isinstance(plan, dict) else 0
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not math.isfinite(target) or target <= 0):
        raise InputError(path, f"target_spacing_mm must be a spacing in mm > 0 or null, got {target!r:.40}; "
                               "prepare the dataset again")
    if plan.get("dataset_json_sha256") != _digest(dataset):  # dataset.json edited since: its plan is stale
        return make_plan(dataset)
    return plan


def _digest(dataset: Dataset) -> str:
    """dataset.json's SHA-256: a plan records what it was made from, so that a dataset.json edited
    after `prepare` (a case's spacing removed) is planned anew rather than trained on a stale plan."""
    return hashlib.sha256((Path(dataset.root) / "dataset.json").read_bytes()).hexdigest()


def describe(fp: dict, pl: dict) -> list[str]:
    """The lines `idealseg info` prints for the fingerprint and the plan (the dataset's, load_plan)."""
    channels = fp.get("channels", 1)
    each = f" of each of {channels} channels" if channels > 1 else ""
    lines = [f"  fingerprint: {fp['with_spacing']} of {fp['cases']} cases know their spacing; "
             f"intensity normalisation{each}: {fp['normalization']}"]
    for key, name in (("in_plane_spacing_mm", "in-plane spacing"), ("slice_spacing_mm", "slice spacing"),
                      ("field_of_view_mm", "field of view (longer side)")):
        if key in fp:
            s = fp[key]
            lines.append(f"    {name}: {s['median']:.2f} mm (min {s['min']:.2f}, max {s['max']:.2f})")
    if "intensity" in fp:
        i = fp["intensity"]
        lines.append(f"    intensity (train): mean {i['mean']:.3f}, std {i['std']:.3f}, "
                     f"0.5-99.5 % {i['p0.5']:.3f} to {i['p99.5']:.3f}")
    for k, i in enumerate(fp.get("intensity_per_channel", [])):
        lines.append(f"      channel {k}: mean {i['mean']:.3f}, std {i['std']:.3f}, "
                     f"0.5-99.5 % {i['p0.5']:.3f} to {i['p99.5']:.3f}")
    if pl["target_spacing_mm"] is None:
        lines.append("  plan: not every case knows its spacing, so slices are resized to the input whatever their size "
                     "in mm (a model trained on it knows no physical size)")
        return lines
    lines.append(f"  plan: target in-plane spacing {pl['target_spacing_mm']:.2f} mm (the median; runs train and "
                 "predict at it unless --target-spacing says otherwise)")
    for name, p in pl["patch"].items():
        whole = "the whole median slice" if p["whole_slice"] else f"part of the median {p['median_fov_mm']:.0f} mm"
        lines.append(f"    profile {name}: {p['pixels']} px patch covers {p['covers_mm']:.0f} mm, {whole}")
    return lines
