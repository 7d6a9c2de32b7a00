"""What idealseg may delete or write over: only what it made itself, never an input.

`--overwrite` is the only way idealseg removes a folder a user can see, so it asks for proof of
ownership: a manifest (`.idealseg.json`) that idealseg writes into every folder it builds (datasets,
run folders, demo folders), naming the top-level entries it put there. A folder without one, or
holding entries the manifest does not name (the user's own files), is refused, and so is an output
that is, contains or lies inside one of the command's inputs. The checks run before anything is
written, so a refused command leaves the disk as it found it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from idealseg.atomic import TEMPORARY, atomic_file, remove_stale_temporaries, temporary, umask
from idealseg.errors import IdealsegError

MANIFEST = ".idealseg.json"


def write_manifest(folder: str | Path, kind: str, entries: Iterable[str] | None = None) -> None:
    """Mark `folder` as idealseg's; `entries` are the top-level names it may hold (default: what it holds now)."""
    folder = Path(folder)
    names = sorted(set(entries) if entries is not None else {p.name for p in folder.iterdir()} - {MANIFEST})
    with atomic_file(folder / MANIFEST) as f:
        json.dump({"written_by": "idealseg", "kind": kind, "entries": names}, f, indent=1)


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of `folder`, or None when idealseg did not mark it (or the mark is unreadable)."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "idealseg" or not isinstance(data.get("entries"), list):
        return None
    return data


def foreign_entries(folder: str | Path, known: Iterable[str] = ()) -> list[str]:
    """Top-level names in `folder` that neither its manifest nor `known` name (glob patterns allowed)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    own = {*(manifest["entries"] if manifest else ()), *known, MANIFEST}
    return sorted(p.name for p in folder.iterdir() if not _ours(p.name, own))


def _ours(name: str, own: set[str]) -> bool:
    """An entry we wrote, or a write-then-rename temporary of one (see `atomic`) that a killed process left."""
    temporary = TEMPORARY.match(name)
    if temporary:
        name = temporary.group(1)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in own)


def describe(names: list[str]) -> str:
    """'a, b, c and 4 more': a short list for a one-line message."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_no_overlap(out: str | Path, inputs: Iterable[str | Path | None], what: str = "output") -> None:
    """Refuse an output that is, contains or lies inside an input: writing it could destroy the input."""
    out_r = Path(out).resolve()
    for inp in inputs:
        if inp is None:
            continue
        inp_r = Path(inp).resolve()
        if out_r == inp_r:
            raise IdealsegError(f"{out}: the {what} is the input {inp}; choose another {what}")
        if inp_r.is_relative_to(out_r):
            raise IdealsegError(f"{out}: the {what} contains the input {inp}; choose a {what} outside it")
        if out_r.is_relative_to(inp_r) and inp_r.is_dir():
            raise IdealsegError(f"{out}: the {what} lies inside the input {inp}; choose a {what} outside it")


def check_replaceable(folder: str | Path) -> None:
    """Raise unless `folder` is absent, or idealseg made it and it holds nothing idealseg did not write."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise IdealsegError(f"{folder}: exists and is not a folder; idealseg will not replace it")
    if read_manifest(folder) is None:
        if not any(folder.iterdir()):
            return
        raise IdealsegError(f"{folder}: exists and was not written by idealseg (no {MANIFEST}); "
                            "idealseg never deletes it: choose a new folder")
    foreign = foreign_entries(folder)
    if foreign:
        raise IdealsegError(f"{folder}: holds files idealseg did not write ({describe(foreign)}); "
                            "move them out or choose a new folder")


def remove_owned(folder: str | Path) -> None:
    """Delete `folder` after `check_replaceable` has said it is idealseg's alone."""
    check_replaceable(folder)
    if Path(folder).exists():
        shutil.rmtree(folder)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False, kind: str = "dataset") -> Iterator[Path]:
    """Build a folder under a temporary name, mark it as idealseg's, and rename it into place.

    An existing destination is refused unless `overwrite` and it is idealseg's alone (see
    `ownership`); it is then replaced only after the new folder is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        hint = "pass --overwrite to replace it" if read_manifest(path) else "choose a new folder"
        raise IdealsegError(f"{path}: output folder exists ({hint})")
    if overwrite:
        check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary(path, "dir")
    tmp.mkdir(mode=0o777 & ~umask())
    try:
        yield tmp
        write_manifest(tmp, kind)
        if path.exists():
            old = temporary(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
