"""Ejection fractions from ED and ES masks: what a cardiologist reads off a segmentation."""

from __future__ import annotations

import numpy as np

from idealseg.data.dataset import CaseEntry, Dataset

CAVITIES = {"LV": "LV", "RV": "RV"}


def ejection_fractions(ds: Dataset, cases: list[CaseEntry], masks: dict[str, np.ndarray]) -> dict | None:
    """Per patient with both phases: LV and RV EF (%) predicted vs reference, and the mean error.

    Phases come from case metadata (`phase` ED/ES); without spacing, voxel counts stand in for
    volumes, which leaves the EF (a ratio) unchanged.
    """
    if not all(name in ds.classes for name in CAVITIES):
        return None
    by_patient: dict[str, dict[str, CaseEntry]] = {}
    for c in cases:
        phase = c.meta.get("phase") or ("ED" if c.id.endswith("frame01") else "ES")
        by_patient.setdefault(c.patient, {})[phase] = c
    rows = []
    for patient, phases in sorted(by_patient.items()):
        if set(phases) != {"ED", "ES"}:
            continue
        row = {"patient": patient}
        for name in CAVITIES:
            k = ds.classes.index(name)
            ref = [float((ds.load(phases[p].id).label == k).sum()) for p in ("ED", "ES")]
            pred = [float((masks[phases[p].id] == k).sum()) for p in ("ED", "ES")]
            row[f"{name}_ef_ref"] = 100 * (ref[0] - ref[1]) / ref[0] if ref[0] else float("nan")
            row[f"{name}_ef_pred"] = 100 * (pred[0] - pred[1]) / pred[0] if pred[0] else float("nan")
        rows.append(row)
    if not rows:
        return None
    out = {"patients": rows}
    for name in CAVITIES:
        err = np.array([r[f"{name}_ef_pred"] - r[f"{name}_ef_ref"] for r in rows])
        out[f"{name}_ef_mae"] = float(np.nanmean(np.abs(err))) if np.isfinite(err).any() else None
    return out
