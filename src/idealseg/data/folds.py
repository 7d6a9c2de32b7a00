"""Cross-validation folds by patient, in nnU-Net's `splits_final.json` format.

The file is a list with one entry per fold, `{"train": [case ids], "val": [case ids]}`, so a split made
for nnU-Net is read as it is and ours can be handed to nnU-Net. Folds cover the labelled patients of
the train and val splits; the test split and unlabelled scans never enter them. A fold that puts two
scans of one patient on both sides is refused: that is how validation results get inflated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from idealseg.errors import IdealsegError, InputError

K_FOLDS = 5
SPLITS_FILE = "splits.json"
NNUNET_SPLITS_FILE = "splits_final.json"


def make_folds(patients: dict[str, list[str]], seed: int = 0, k: int = K_FOLDS) -> list[dict[str, list[str]]]:
    """`k` folds over `patients` ({patient: case ids}): each patient's cases in exactly one fold's val,
    the patients shuffled by `seed` (nnU-Net's KFold with shuffling, by patient)."""
    names = sorted(patients)
    if len(names) < 2:
        raise IdealsegError(f"folds need at least 2 labelled patients, the dataset has {len(names)}")
    k = min(k, len(names))
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    folds = []
    for f in range(k):
        held = set(order[f::k])
        folds.append({"train": sorted(c for p in names if p not in held for c in patients[p]),
                      "val": sorted(c for p in sorted(held) for c in patients[p])})
    return folds


def check_folds(folds: Any, patient_of: dict[str, str], path: Path) -> list[dict[str, list[str]]]:
    """A splits file's folds, checked against the dataset's cases ({case id: patient})."""
    if not isinstance(folds, list) or not folds:
        raise InputError(path, "expected a list of folds, each {\"train\": [case ids], \"val\": [case ids]}")
    for i, fold in enumerate(folds):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"} or not all(
                isinstance(ids, list) and all(isinstance(c, str) for c in ids) for ids in fold.values()):
            raise InputError(path, f"fold {i}: expected {{\"train\": [case ids], \"val\": [case ids]}}")
        unknown = sorted((set(fold["train"]) | set(fold["val"])) - set(patient_of))
        if unknown:
            raise InputError(path, f"fold {i} names case {unknown[0]!r}, which the dataset lacks (or is a test case)")
        shared = sorted({patient_of[c] for c in fold["train"]} & {patient_of[c] for c in fold["val"]})
        if shared:
            raise InputError(path, f"fold {i} puts patient {shared[0]!r} in both train and val; "
                                   "a patient's scans belong on one side")
        if not fold["val"]:
            raise InputError(path, f"fold {i} has no val cases")
    return folds


def read_folds(path: Path, patient_of: dict[str, str]) -> list[dict[str, list[str]]]:
    """Folds from a splits file (ours or nnU-Net's splits_final.json), checked."""
    try:
        folds = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a readable JSON splits file ({exc})") from None
    return check_folds(folds, patient_of, path)


def fold_split(folds: list[dict[str, list[str]]], fold: int, path: Path) -> dict[str, str]:
    """{case id: "train" or "val"} for fold `fold`."""
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < len(folds):
        raise InputError(path, f"--fold {fold!r}: this splits file has folds 0 to {len(folds) - 1}")
    return {**dict.fromkeys(folds[fold]["train"], "train"), **dict.fromkeys(folds[fold]["val"], "val")}
