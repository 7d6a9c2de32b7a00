"""Checks of a volume's spacing against a model's, before it is segmented.

A model in physical space sees the anatomy at the size the header's spacing implies, so a header in
the wrong unit, or a scan nothing like the training set's, gives a confident wrong mask rather than
an error: these checks say so before the first mask is written.
"""

from __future__ import annotations

from pathlib import Path

from idealseg.errors import IdealsegError

SPACING_MISMATCH = 4.0  # a scan's in-plane spacing this many times finer or coarser than the model's is suspect


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


def check_spacing(cfg, root: Path, cases) -> None:
    """A run in physical space can only segment cases that know their spacing: say so before the first."""
    missing = [c.id for c in cases if not c.spacing]
    if cfg.spacing_mm and missing:
        raise IdealsegError(f"{root}: the run works at {cfg.spacing_mm:g} mm and {len(missing)} case(s) have no "
                            f"spacing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
