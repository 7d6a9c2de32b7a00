"""Reading a YAML file of options: one module, so that every reader names a bad file the same way.

A command consults the same file from several places (a --config YAML for the profile, the method
and the options; a run folder's config.yaml for the resume check and the recorded options): the
file is read and parsed once per version of it (its path, device, inode, size and modification time), and
each caller gets its own copy to change."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from idealseg.errors import InputError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping, or a one-line error naming the file."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(path, f"unreadable ({exc.strerror})") from None
    return copy.deepcopy(_read(path, (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)))


@functools.lru_cache(maxsize=64)
def _read(path: Path, version: tuple[int, int, int, int]) -> dict[str, Any]:
    """The mapping of one `version` of `path` (its device, inode, size and modification time: a file
    rewritten or replaced is read anew). Errors are not cached, so a file fixed is read again."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise InputError(path, f"unreadable ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, f"unreadable YAML ({where}{problem})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of option: value")
    return data
