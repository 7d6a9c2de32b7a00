"""A Decathlon or nnU-Net v2 `dataset.json` beside imagesTr: the class names and modality its authors
wrote down, so that a user does not retype them (and cannot retype them in another order).

Both layouts are read: nnU-Net v2 (`"labels": {"background": 0, "RV": 1}`, `"channel_names"`,
`"file_ending"`) and the Decathlon's (`"labels": {"0": "background", "1": "RV"}`, `"modality"`).
nnU-Net v2's `"ignore": N` entry (N the largest label value) marks unannotated voxels: it is no class,
and the importer stores those voxels as IGNORE_LABEL, which no loss and no metric reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idealseg.errors import InputError

NAME = "dataset.json"
IGNORE = "ignore"  # nnU-Net v2's name for the label of unannotated voxels


@dataclass(frozen=True)
class SourceJson:
    """What idealseg takes from a source's dataset.json."""

    classes: list[str] | None
    channels: list[str] | None
    modality: str | None
    file_ending: str | None
    ignore: int | None = None  # the label value of unannotated voxels in the source's label files


def read_source_json(src: Path) -> SourceJson | None:
    """The source folder's dataset.json, or None where it has none; a broken one is a one-line error."""
    path = src / NAME
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a readable JSON file ({exc})") from None
    if not isinstance(info, dict):
        raise InputError(path, "expected a JSON object with 'labels'")
    channels = _channels(info.get("channel_names", info.get("modality")), path)
    ending = info.get("file_ending")
    if ending is not None and ending not in (".nii.gz", ".nii"):
        raise InputError(path, f"file_ending {ending!r}: idealseg reads NIfTI (.nii.gz or .nii)")
    modality = ", ".join(channels) if channels else None
    classes, ignore = _classes(info.get("labels"), path)
    return SourceJson(classes, channels, modality, ending, ignore)


def source_ignore(src: Path) -> int | None:
    """The `ignore` label value of the nnU-Net v2 dataset.json in `src`, or None where there is none: what
    scoring a labelsTr/ beside it must leave out. Any other dataset.json (an idealseg one, a Decathlon
    one) is not this reader's to refuse; a broken `labels` with an `ignore` entry is a one-line error."""
    try:
        info = json.loads((src / NAME).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    labels = info.get("labels") if isinstance(info, dict) else None
    if not isinstance(labels, dict) or IGNORE not in labels:
        return None
    return _classes(labels, src / NAME)[1]


def _classes(labels: Any, path: Path) -> tuple[list[str] | None, int | None]:
    """Class names in class-number order, from either layout, and the value of nnU-Net v2's `ignore`
    label (None without one); numbers must run 0, 1, 2, ... as nnU-Net requires, `ignore` last, and
    region-based labels (lists of numbers) are not class maps."""
    if labels is None:
        return None, None
    if not isinstance(labels, dict) or not labels:
        raise InputError(path, "'labels' must map class names to numbers (or numbers to names)")
    pairs, ignore = [], None
    for key, value in labels.items():
        if isinstance(value, list):
            raise InputError(path, f"label {key!r} is a region ({value}); idealseg trains one class per voxel")
        v2 = isinstance(value, int) and not isinstance(value, bool)
        number, name = (value, key) if v2 else (key, value)
        try:
            pairs.append((int(number), str(name)))
        except (TypeError, ValueError):
            raise InputError(path, f"label {key!r}: {value!r} is neither a class number nor a name") from None
        if v2 and key == IGNORE:
            ignore = int(value)
    pairs.sort()
    if [n for n, _ in pairs] != list(range(len(pairs))):
        raise InputError(path, f"labels are numbered {[n for n, _ in pairs]}; expected 0, 1, 2, ... (map codes with "
                               "--label-map and name classes with --classes instead)")
    if ignore is not None and ignore != pairs[-1][0]:
        raise InputError(path, f"the 'ignore' label is {ignore}, not the largest label value {pairs[-1][0]}; "
                               "nnU-Net requires it to be the largest")
    if ignore == 0:
        raise InputError(path, "the 'ignore' label is 0, the background's number; give it the largest value")
    return [name for n, name in pairs if n != ignore], ignore


def _channels(channels: Any, path: Path) -> list[str] | None:
    if channels is None:
        return None
    if not isinstance(channels, dict) or not channels:
        raise InputError(path, "'channel_names' (or 'modality') must map channel numbers to names")
    try:
        ordered = sorted((int(k), str(v)) for k, v in channels.items())
    except (TypeError, ValueError):
        raise InputError(path, "'channel_names' keys must be channel numbers (\"0\", \"1\", ...)") from None
    return [name for _, name in ordered]
