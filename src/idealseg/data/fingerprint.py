"""A dataset's fingerprint (spacing, field of view, intensities) and the plan derived from it.

nnU-Net's answer to scans framed differently by different centres: measure the dataset, choose a
target spacing (the median in-plane spacing), and size the network's patch in millimetres. `idealseg
info` prints both, so a user sees how a profile's patch relates to the anatomy before training;
training uses the same target (data/physical.py).
"""

from __future__ import annotations

import numpy as np

from idealseg.data.dataset import Dataset


def fingerprint(dataset: Dataset) -> dict:
    """Spacing and field-of-view distributions over the cases that know their spacing, and
    intensity statistics of the stored (normalised) images of the training cases."""
    known = [c for c in dataset.cases if c.spacing is not None]
    fp: dict = {"cases": len(dataset.cases), "with_spacing": len(known),
                "normalization": dataset.info.get("normalization", "unknown")}
    if known:
        spacing = np.array([c.spacing for c in known], dtype=float)  # (z, y, x) mm
        fov = np.array([[c.shape[1] * c.spacing[1], c.shape[2] * c.spacing[2]] for c in known], dtype=float)
        fp["in_plane_spacing_mm"] = _stats(np.concatenate([spacing[:, 1], spacing[:, 2]]))
        fp["slice_spacing_mm"] = _stats(spacing[:, 0])
        fp["field_of_view_mm"] = _stats(fov.max(1))
    values = [dataset.load(c.id).image.ravel() for c in dataset.split("train")[:20]]
    if values:
        pixels = np.concatenate(values)
        fp["intensity"] = {"mean": float(pixels.mean()), "std": float(pixels.std()),
                           "p0.5": float(np.percentile(pixels, 0.5)), "p99.5": float(np.percentile(pixels, 99.5))}
    return fp


def _stats(values: np.ndarray) -> dict:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def plan(fp: dict, input_sizes: dict[str, int]) -> dict:
    """Target in-plane spacing (the median, as nnU-Net) and, per profile, what its square input
    covers in millimetres at that spacing against the median field of view. Without spacing there is
    no plan: slices are resized to the input, and a model knows no physical size."""
    if "in_plane_spacing_mm" not in fp or fp["with_spacing"] < fp["cases"]:  # as resolve_spacing("auto")
        return {"target_spacing_mm": None}
    target = fp["in_plane_spacing_mm"]["median"]
    fov = fp["field_of_view_mm"]["median"]
    return {"target_spacing_mm": target,
            "patch": {name: {"pixels": size, "covers_mm": size * target, "median_fov_mm": fov,
                             "whole_slice": size * target >= fov} for name, size in input_sizes.items()}}


def describe(fp: dict, pl: dict) -> list[str]:
    """The lines `idealseg info` prints for the fingerprint and the plan."""
    lines = [f"  fingerprint: {fp['with_spacing']} of {fp['cases']} cases know their spacing; "
             f"intensity normalisation: {fp['normalization']}"]
    for key, name in (("in_plane_spacing_mm", "in-plane spacing"), ("slice_spacing_mm", "slice spacing"),
                      ("field_of_view_mm", "field of view (longer side)")):
        if key in fp:
            s = fp[key]
            lines.append(f"    {name}: {s['median']:.2f} mm (min {s['min']:.2f}, max {s['max']:.2f})")
    if "intensity" in fp:
        i = fp["intensity"]
        lines.append(f"    intensity (train): mean {i['mean']:.3f}, std {i['std']:.3f}, "
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
