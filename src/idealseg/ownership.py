"""What idealseg may delete or write over: only what it made itself, never an input.

`--overwrite` is the only way idealseg removes a folder a user can see, so it asks for proof of
ownership: a manifest (`.idealseg.json`) that idealseg writes into every folder it builds, saying
what kind of folder it is (dataset, run, demo, evaluation) and which files it may hold (glob
patterns of paths inside it; a dataset lists its files exactly). A folder is idealseg's alone only
if it carries a manifest of the expected kind and every file below it, at any depth, is named by
the nearest manifest above it (folders nest: a demo folder holds a dataset and run folders, each
with its own). Anything else (no manifest, another kind, one file of the user's) is refused, and so
is an output that is, contains or lies inside one of the command's inputs. The checks run before
anything is written, so a refused command leaves the disk as it found it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from idealseg.atomic import TEMPORARY, atomic_file, remove_stale_temporaries, temporary, umask
from idealseg.errors import IdealsegError

MANIFEST = ".idealseg.json"


def write_manifest(folder: str | Path, kind: str, files: Iterable[str] | None = None) -> None:
    """Mark `folder` as idealseg's `kind`; `files` are glob patterns of the paths it may hold
    (default: exactly the files it holds now, for a folder that is complete when marked)."""
    folder = Path(folder)
    if files is None:
        files = [glob.escape(str(p.relative_to(folder)))  # exact names, even with [, *, ? in them
                 for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST]
    with atomic_file(folder / MANIFEST) as f:
        json.dump({"written_by": "idealseg", "kind": kind, "files": sorted(set(files))}, f, indent=1)


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of `folder`, or None when idealseg did not mark it (or the mark is unreadable)."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "idealseg" or not isinstance(data.get("files"), list):
        return None
    return data


def foreign_files(folder: str | Path, known: Iterable[str] = ()) -> list[str]:
    """Paths below `folder` that no manifest claims: each file is judged by the nearest manifest above
    it (`known` patterns count as `folder`'s own); files inside a killed process's temporary are ours."""
    folder = Path(folder)
    manifests: dict[Path, list[str] | None] = {}
    foreign = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        found = read_manifest(here)
        manifests[here] = found["files"] if found else None
        if here == folder:
            manifests[here] = [*(manifests[here] or []), *known] if (found or known) else None
        dirnames[:] = [d for d in dirnames if not TEMPORARY.match(d)]  # a killed writer's half-built folder
        for name in filenames:
            if name == MANIFEST or TEMPORARY.match(name):
                continue
            path = here / name
            owner = next((a for a in [here, *here.parents] if manifests.get(a) is not None), None)
            patterns = manifests.get(owner) if owner is not None and owner.is_relative_to(folder) else None
            rel = str(path.relative_to(owner)) if patterns is not None else ""
            if patterns is None or not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                foreign.append(str(path.relative_to(folder)))
    return sorted(foreign)


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
            raise IdealsegError(f"{out}: the {what} contains the input {inp}; choose one outside it")
        if out_r.is_relative_to(inp_r) and inp_r.is_dir():
            raise IdealsegError(f"{out}: the {what} lies inside the input {inp}; choose one outside it")


def owned(folder: str | Path, kind: str) -> bool:
    """Whether `folder` carries idealseg's manifest of `kind` (what it may then hold is `foreign_files`' job)."""
    manifest = read_manifest(folder)
    return manifest is not None and manifest.get("kind") == kind


def check_replaceable(folder: str | Path, kind: str, known: Iterable[str] = ()) -> None:
    """Raise unless `folder` is absent or empty, or is idealseg's `kind` holding only idealseg's files."""
    folder = Path(folder)
    if folder.is_symlink():
        raise IdealsegError(f"{folder}: is a symbolic link; idealseg will not replace it (give the folder itself)")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise IdealsegError(f"{folder}: exists and is not a folder; idealseg will not replace it")
    if not any(folder.iterdir()):
        return
    manifest = read_manifest(folder)
    if manifest is None and not known:
        raise IdealsegError(f"{folder}: exists and was not written by idealseg (no {MANIFEST}); "
                            "idealseg never deletes it: choose a new folder")
    if manifest is not None and manifest.get("kind") != kind:
        raise IdealsegError(f"{folder}: is an idealseg {manifest.get('kind')} folder, not a {kind} folder; "
                            "idealseg will not replace one with the other: choose a new folder")
    foreign = foreign_files(folder, known)
    if foreign:
        raise IdealsegError(f"{folder}: holds files idealseg did not write ({describe(foreign)}); "
                            "move them out or choose a new folder")


def remove_owned(folder: str | Path, kind: str) -> None:
    """Delete `folder` after `check_replaceable` has said it is idealseg's `kind` alone."""
    check_replaceable(folder, kind)
    if Path(folder).exists():
        shutil.rmtree(folder)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False, kind: str = "dataset") -> Iterator[Path]:
    """Build a folder under a temporary name, mark it as idealseg's, and rename it into place.

    An existing destination is refused unless `overwrite` and it is idealseg's alone (see
    `ownership`); it is then replaced only after the new folder is complete.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        hint = "pass --overwrite to replace it" if owned(path, kind) else "choose a new folder"
        raise IdealsegError(f"{path}: output folder exists ({hint})")
    if overwrite:
        check_replaceable(path, kind)
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
