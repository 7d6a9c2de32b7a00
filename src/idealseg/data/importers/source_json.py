"""A Decathlon or nnU-Net v2 `dataset.json` beside imagesTr: the class names and modality its authors
wrote down, so that a user does not retype them (and cannot retype them in another order).

Both layouts are read: nnU-Net v2 (`"labels": {"background": 0, "RV": 1}`, `"channel_names"`,
`"file_ending"`) and the Decathlon's (`"labels": {"0": "background", "1": "RV"}`, `"modality"`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idealseg.errors import InputError

NAME = "dataset.json"


@dataclass(frozen=True)
class SourceJson:
    """What idealseg takes from a source's dataset.json."""

    classes: list[str] | None
    channels: list[str] | None
    modality: str | None
    file_ending: str | None


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
    return SourceJson(_classes(info.get("labels"), path), channels, modality, ending)


def _classes(labels: Any, path: Path) -> list[str] | None:
    """Class names in class-number order, from either layout; numbers must run 0, 1, 2, ... as nnU-Net
    requires, and region-based labels (lists of numbers) are not class maps."""
    if labels is None:
        return None
    if not isinstance(labels, dict) or not labels:
        raise InputError(path, "'labels' must map class names to numbers (or numbers to names)")
    pairs = []
    for key, value in labels.items():
        if isinstance(value, list):
            raise InputError(path, f"label {key!r} is a region ({value}); idealseg trains one class per voxel")
        number, name = (value, key) if isinstance(value, int) and not isinstance(value, bool) else (key, value)
        try:
            pairs.append((int(number), str(name)))
        except (TypeError, ValueError):
            raise InputError(path, f"label {key!r}: {value!r} is neither a class number nor a name") from None
    pairs.sort()
    if [n for n, _ in pairs] != list(range(len(pairs))):
        raise InputError(path, f"labels are numbered {[n for n, _ in pairs]}; expected 0, 1, 2, ... (map codes with "
                               "--label-map and name classes with --classes instead)")
    return [name for _, name in pairs]


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
