"""Reading a YAML file of options: one module, so that every reader names a bad file the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from idealseg.errors import InputError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping, or a one-line error naming the file."""
    path = Path(path)
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
