"""`prepare`'s arguments as the Python API may give them (a dict, a list, a number) turned into the
forms the command line gives (`205:1,420:2`, `a,b`, `20%`), or refused in one line naming the option:
a script then gets the CLI's checks and messages instead of an AttributeError from deep inside."""

from __future__ import annotations

from typing import Any

from idealseg import checks
from idealseg.checks import InvalidValue


def label_map_text(value: Any) -> str | None:
    """--label-map: `"205:1,420:2"`, or the same as a dict `{205: 1, 420: 2}` (or (code, class) pairs)."""
    if value is None or isinstance(value, str):
        return value
    pairs = value.items() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else None
    try:
        items = [(src, dst) for src, dst in pairs]
    except (TypeError, ValueError):
        items = None
    if not items or not all(checks.is_whole(v) for pair in items for v in pair):
        raise InvalidValue(f"--label-map {value!r}: give source code: class pairs of whole numbers, as a dict "
                           "{205: 1, 420: 2} or the text '205:1,420:2'")
    return ",".join(f"{src}:{dst}" for src, dst in items)


def class_names(value: Any) -> list[str] | None:
    """--classes: a list of names, background first, or the text `background,RV,Myo,LV`."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidValue(f"--classes {value!r}: give class names, background first, as a list of strings "
                       "or the text 'background,RV,Myo,LV'")


def split_text(value: Any, name: str) -> str | None:
    """--val / --test: `20%`, a count (an int too), patient ids (`a,b` or a list) or `@file`."""
    if value is None or isinstance(value, str):
        return value
    if checks.is_whole(value):
        return str(checks.whole_number(value, name, 0))
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    raise InvalidValue(f"{name} {value!r}: give a percentage ('20%'), a count (4), patient ids (a list or 'a,b') "
                       "or '@file'")
