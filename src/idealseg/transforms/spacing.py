"""The in-plane spacing facts every stage derives from a (Z, H, W) spacing, in one place (the lowest room
that import, training and inference all read; no torch, so that importers stay light)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def in_plane(spacing: Sequence[float] | None) -> tuple[float, float] | None:
    """The (H, W) spacing in mm of a (Z, H, W) spacing (an (H, W) one is its own), or None where it is
    unknown: what resampling, the plan and the checks of a scan all measure a slice by."""
    if spacing is None or len(spacing) == 0:
        return None
    return float(spacing[-2]), float(spacing[-1])


def in_plane_values(spacings: Iterable[Sequence[float]]) -> np.ndarray:
    """Both in-plane values of every (Z, H, W) spacing given, one array: the distribution the
    dataset's fingerprint describes and its plan takes the median of."""
    pairs = [in_plane(s) for s in spacings]
    return np.array([v for pair in pairs if pair for v in pair], dtype=float)


def median_in_plane(spacings: Iterable[Sequence[float]]) -> float | None:
    """The median in-plane spacing (mm) of the spacings given, None where none is known: the plan's
    target spacing (nnU-Net's median), and what a chosen spacing or a run is checked against, so that
    the plan and its checks measure from the same number."""
    values = in_plane_values(spacings)
    return float(np.median(values)) if values.size else None
