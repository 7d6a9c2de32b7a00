"""What a dataset.json must hold, checked whenever a dataset is opened (data/dataset.py), so that one
edited by hand is one line naming the file, the entry and the problem."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from idealseg.checks import is_number, is_whole
from idealseg.errors import InputError
from idealseg.labels import IGNORE_LABEL
from idealseg.transforms.normalize import NORMALIZATIONS

SPLITS = ("train", "val", "test")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_case_id(case_id: str, source: str | Path) -> None:
    """Refuse ids that could escape the cases/ folder or break file names."""
    if not _CASE_ID.match(case_id) or ".." in case_id:
        raise InputError(source, f"case id {case_id!r} is not a plain file name")

# dataset.json, as DatasetWriter writes it: every entry a stage reads, with its type. Checked whenever a
# dataset is opened, so that one edited by hand (a spacing typed as "1.5", a null in a list) is one
# line naming the file, the entry and the problem, not a traceback deep inside a stage.
CASE_KEYS = {"id", "patient", "split", "labeled", "shape", "spacing", "meta"}
OPTIONAL_CASE_KEYS = {"spacing", "meta"}
TEXT_ENTRIES = ("name", "modality", "source", "idealseg_version")


def check_dataset_info(info: Any, meta: Path) -> None:
    """Refuse a dataset.json whose entries are missing, of the wrong type or out of range."""
    if not isinstance(info, dict):
        raise InputError(meta, "dataset.json must hold a mapping; rebuild it with `idealseg prepare`")
    for key in ("classes", "cases", "splits"):
        if key not in info:
            raise InputError(meta, f"dataset.json has no {key!r} entry")
    classes = info["classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise InputError(meta, f"dataset.json 'classes' must list at least two class names, got {classes!r}")
    if len(classes) > IGNORE_LABEL:
        raise InputError(meta, f"dataset.json names {len(classes)} classes; at most {IGNORE_LABEL} fit the stored "
                               f"labels ({IGNORE_LABEL} marks unannotated voxels)")
    if "ignore_label" in info and info["ignore_label"] != IGNORE_LABEL:
        raise InputError(meta, f"dataset.json 'ignore_label' must be {IGNORE_LABEL} (unannotated voxels), got "
                               f"{info['ignore_label']!r}")
    for key in TEXT_ENTRIES:
        if key in info and not isinstance(info[key], str):
            raise InputError(meta, f"dataset.json {key!r} must be a string, got {info[key]!r}")
    if "channels" in info and not (is_whole(info["channels"]) and info["channels"] >= 1):
        raise InputError(meta, f"dataset.json 'channels' must be a whole number >= 1, got {info['channels']!r}")
    if "normalization" in info and info["normalization"] not in NORMALIZATIONS:
        raise InputError(meta, f"dataset.json 'normalization' must be one of {', '.join(NORMALIZATIONS)}, "
                               f"got {info['normalization']!r}")
    cases = info["cases"]
    if not isinstance(cases, list) or not cases:
        raise InputError(meta, f"dataset.json 'cases' must list the cases, got {str(cases)[:60]!r}")
    for index, case in enumerate(cases):
        _check_case(case, index, meta)
    twice = [case_id for case_id, n in Counter(c["id"] for c in cases).items() if n > 1]
    if twice:
        raise InputError(meta, f"dataset.json lists case {twice[0]!r} twice")
    _check_splits(info["splits"], {c["id"]: c["split"] for c in cases}, meta)
    if "slice_order" in info:
        _check_slice_order(info["slice_order"], {c["id"]: c["shape"][0] for c in cases}, meta)


def _check_case(case: Any, index: int, meta: Path) -> None:
    """One entry of `cases`: its keys, then each value (named by the case's id where it has one)."""
    if not isinstance(case, dict):
        raise InputError(meta, f"dataset.json has a malformed case entry: cases[{index}] is {case!r}, not a mapping")
    unknown = sorted(set(case) - CASE_KEYS)
    missing = sorted(CASE_KEYS - OPTIONAL_CASE_KEYS - set(case))
    if unknown or missing:
        problem = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
        raise InputError(meta, f"dataset.json has a malformed case entry: cases[{index}] ({case.get('id')!r}): "
                               f"{problem}")
    where = f"dataset.json case {case['id']!r}" if isinstance(case["id"], str) else f"dataset.json cases[{index}]"
    if not isinstance(case["id"], str):
        raise InputError(meta, f"{where}: 'id' must be a string, got {case['id']!r}")
    check_case_id(case["id"], meta)
    if not isinstance(case["patient"], str) or not case["patient"]:
        raise InputError(meta, f"{where}: 'patient' must be a non-empty string, got {case['patient']!r}")
    if case["split"] not in SPLITS:
        raise InputError(meta, f"{where}: 'split' must be one of {', '.join(SPLITS)}, got {case['split']!r}")
    if not isinstance(case["labeled"], bool):
        raise InputError(meta, f"{where}: 'labeled' must be true or false, got {case['labeled']!r}")
    shape = case["shape"]
    if not isinstance(shape, list) or len(shape) != 3 or not all(is_whole(s) and s >= 1 for s in shape):
        raise InputError(meta, f"{where}: 'shape' must be three whole numbers >= 1 [Z, H, W], got {shape!r}")
    spacing = case.get("spacing")
    if spacing is not None and (not isinstance(spacing, list) or len(spacing) != 3
                                or not all(is_number(s) and s > 0 for s in spacing)):
        raise InputError(meta, f"{where}: 'spacing' must be three numbers > 0 (z, y, x in mm) or null, "
                               f"got {spacing!r}")
    if not isinstance(case.get("meta", {}), dict):
        raise InputError(meta, f"{where}: 'meta' must be a mapping, got {case['meta']!r}")


def _check_splits(splits: Any, split_of: dict[str, str], meta: Path) -> None:
    """`splits` must agree with each case's `split`: the stages read the latter, so an edit made in
    one place only would be silently ignored."""
    if not isinstance(splits, dict) or set(splits) - set(SPLITS):
        raise InputError(meta, f"dataset.json 'splits' must map {', '.join(SPLITS)} to lists of case ids, "
                               f"got {str(splits)[:80]!r}")
    listed: dict[str, str] = {}
    for name, ids in splits.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InputError(meta, f"dataset.json 'splits' {name!r} must list case ids, got {str(ids)[:60]!r}")
        for case_id in ids:
            if case_id not in split_of:
                raise InputError(meta, f"dataset.json 'splits' {name!r} names case {case_id!r}, which 'cases' lacks")
            if split_of[case_id] != name or case_id in listed:
                raise InputError(meta, f"dataset.json case {case_id!r}: 'split' is {split_of[case_id]!r} but "
                                       f"'splits' lists it under {name!r}; make the two agree")
            listed[case_id] = name
    unlisted = [i for i in split_of if i not in listed]
    if unlisted:
        raise InputError(meta, f"dataset.json case {unlisted[0]!r}: 'split' is {split_of[unlisted[0]]!r} but "
                               "'splits' does not list it; make the two agree")


def _check_slice_order(order: Any, depth: dict[str, int], meta: Path) -> None:
    """`slice_order` (SSL4MIS imports): `case:slice` entries naming a case and one of its slices."""
    if not isinstance(order, list):
        raise InputError(meta, f"dataset.json 'slice_order' must list case:slice entries, got {str(order)[:60]!r}")
    for entry in order:
        case_id, _, z = str(entry).rpartition(":") if isinstance(entry, str) else ("", "", "")
        if case_id not in depth or not z.isdigit() or int(z) >= depth[case_id]:
            raise InputError(meta, f"dataset.json 'slice_order' entry {entry!r} names no slice of a case "
                                   "(expected case_id:slice)")
