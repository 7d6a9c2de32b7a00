"""What idealseg may delete or write over: only what it made itself, never an input.

`--overwrite` is the only way idealseg removes a folder a user can see, so it asks for proof of
ownership: a manifest (`.idealseg.json`) that idealseg writes into every folder it builds, saying
what kind of folder it is (dataset, run, demo, evaluation, benchmark) and which files idealseg wrote
there: a dataset lists its files when it is complete, the other kinds record each file before they
write it (`written`; a pattern only for a writer that names its file itself, TensorBoard's events).
`LAYOUTS` says, once, which sub-folders a kind makes (maybe empty) and where a folder of another
kind may nest (a run's `eval_*`, a demo's dataset), judged by its own manifest. A folder is
idealseg's alone only if its manifest is of the expected kind and every path below it is recorded
there: anything else (a user's file at any depth, also at one of idealseg's names, a symbolic link,
an empty folder idealseg does not make, a manifest nested where none belongs, a file that only looks
like a temporary) is foreign, and a folder holding anything foreign is never replaced. The check
runs before anything is written, and again at the moment of replacement (`replace_folder` moves the
old folder aside first, then checks what it moved), so a file that appears while a command runs is
never deleted either. A manifest of an idealseg older than 0.1.0 (no `written` record) is one line.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from idealseg.atomic import atomic_file, remove_stale_temporaries, temporary, temporary_owner, umask
from idealseg.errors import IdealsegError, InputError
from idealseg.writer_lock import LOCK, lock_holder, writer_lock

MANIFEST = ".idealseg.json"


@dataclass(frozen=True)
class Layout:
    """What a kind of folder may hold besides its recorded files: `dirs`, the sub-folders its writer
    makes (maybe still empty), and `folders` (pattern -> kind of the idealseg folder that may nest
    there, with its own manifest)."""
    dirs: tuple[str, ...] = ()
    folders: dict[str, str] = field(default_factory=dict)


EVAL_FILES = ("per_volume.csv", "summary.json", "table.md")
LAYOUTS = {
    "run": Layout(("checkpoints", "tensorboard", "report"), {"eval_*": "evaluation"}),
    "evaluation": Layout(),
    "demo": Layout((), {"dataset": "dataset", "run/pretrain": "run", "run/finetune": "run"}),
    "benchmark": Layout((), {"cells/*/run": "run", "pretrain/*": "run", "calibrate-*/run": "run"}),
    "dataset": Layout(),
}
AGAIN = {"dataset": "prepare it again", "run": "train it again", "evaluation": "evaluate again"}


def matches(rel: str, pattern: str) -> bool:
    """Whether path `rel` matches `pattern` level by level: `tensorboard/*` claims tensorboard/a, never
    tensorboard/drafts/a (fnmatch's `*` would cross the `/`)."""
    parts, wanted = rel.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def write_manifest(folder: str | Path, kind: str) -> None:
    """Mark `folder` as idealseg's `kind`. A dataset records exactly the files it holds now (it is
    complete when marked); other kinds keep what their writers recorded so far (`record_written`)."""
    folder = Path(folder)
    files = [glob.escape(p.relative_to(folder).as_posix())  # exact names, even with [, *, ? in them
             for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST] if kind == "dataset" else []
    old = read_manifest(folder)
    written = old["written"] if old is not None and old["kind"] == kind else []
    with atomic_file(folder / MANIFEST) as f:
        json.dump({"written_by": "idealseg", "kind": kind, "files": sorted(set(files)), "written": written}, f,
                  indent=1)


def record_written(folder: str | Path, paths: Iterable[str | Path], patterns: Iterable[str] = ()) -> None:
    """Add `paths` (inside `folder`) to what its manifest says idealseg writes there, so that `--overwrite`
    later deletes them and nothing else of that name (a user's own report/report.md stays theirs).
    Called before the write, so that a process killed between the two leaves nothing unclaimed;
    `patterns` for a writer that names its file itself (TensorBoard: time, host and process id)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return  # not idealseg's: nothing of it is claimed
    names = {glob.escape(Path(p).relative_to(folder).as_posix()) for p in paths} | set(patterns)
    if names <= set(manifest["written"]):
        return
    manifest["written"] = sorted(set(manifest["written"]) | names)
    with atomic_file(folder / MANIFEST) as f:
        json.dump(manifest, f, indent=1)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of `folder`, or None when idealseg did not mark it (or the mark is unreadable); one
    line for the manifest of an idealseg older than 0.1.0, which recorded no files it wrote."""
    path = Path(folder) / MANIFEST
    if path.is_symlink():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("written_by") != "idealseg" or not isinstance(data.get("kind"), str)
            or not _strings(data.get("files"))):
        return None
    if "written" not in data and data["kind"] != "dataset":
        raise InputError(path, f"an idealseg {data['kind']} folder older than 0.1.0 (it records no files it wrote); "
                               f"{AGAIN.get(data['kind'], 'run it again')} into a new folder")
    data.setdefault("written", [])
    return data if _strings(data["written"]) else None


def check_writable(folder: str | Path, names: Iterable[str]) -> None:
    """Refuse to write `names` (paths inside `folder`, an idealseg folder) where a file of that name
    exists that idealseg did not write there (its manifest does not record it)."""
    folder = Path(folder)
    written = (read_manifest(folder) or {"written": []})["written"]
    theirs = [n for n in names if (folder / n).is_symlink()
              or ((folder / n).exists() and not any(matches(n, w) for w in written))]
    if theirs:
        raise IdealsegError(f"{folder}: holds files idealseg did not write where it would write ({describe(theirs)}); "
                            "move them out")


def _claims(manifest: dict) -> tuple[str, ...]:
    """The files a folder's manifest claims: a dataset's exact list, another kind's recorded writes."""
    return tuple(manifest["files"] if manifest["kind"] == "dataset" else manifest["written"])


def _dirs(layout: Layout, claims: tuple[str, ...]) -> set[str]:
    """The sub-folders idealseg makes: the layout's, and those its claimed files and nested folders live in."""
    dirs = set(layout.dirs)
    for pattern in (*claims, *layout.folders):
        parts = pattern.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return dirs


def foreign_files(folder: str | Path, kind: str) -> list[str]:
    """Paths below `folder` that idealseg's `kind` folder may not hold (see the module's docstring);
    everything in a folder without a manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return sorted(p.relative_to(folder).as_posix() for p in folder.iterdir()
                      if p.name != LOCK or lock_holder(p) is None)
    if manifest["kind"] != kind:
        return [f"{MANIFEST} (an idealseg {manifest['kind']} folder, not a {kind} folder)"]
    return sorted(_foreign_below(folder, kind, manifest, ""))


def _foreign_below(folder: Path, kind: str, manifest: dict, prefix: str) -> list[str]:
    """Walk `folder` (idealseg's `kind`, whose files `manifest` claims), descending into nested idealseg folders."""
    foreign: list[str] = []
    layout, claims = LAYOUTS.get(kind, Layout()), _claims(manifest)
    dirs = _dirs(layout, claims)
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        rel_here = here.relative_to(folder).as_posix()
        rel_here = "" if rel_here == "." else rel_here + "/"
        keep = []
        for name in dirnames:
            path, rel = here / name, rel_here + name
            nested = next((k for p, k in layout.folders.items() if matches(rel, p)), None)
            if path.is_symlink() or temporary_owner(name) is not None:
                if path.is_symlink():
                    foreign.append(prefix + rel)
                continue  # a temporary idealseg is writing or left: removed with its folder
            if nested is not None:
                foreign.extend(_foreign_nested(path, nested, prefix + rel + "/"))
            elif any(matches(rel, d) for d in dirs):
                keep.append(name)
            elif read_manifest(path) is not None:
                foreign.append(f"{prefix}{rel} (an idealseg {read_manifest(path)['kind']} folder nested here)")
            else:
                foreign.extend(_everything(path, prefix + rel))
        dirnames[:] = keep
        for name in filenames:
            path, rel = here / name, rel_here + name
            if path.is_symlink():
                foreign.append(prefix + rel)
            elif (rel == MANIFEST and not rel_here) or temporary_owner(name) is not None:
                continue
            elif name == LOCK and not rel_here and lock_holder(path) is not None:
                continue
            elif not any(matches(rel, c) for c in claims):
                foreign.append(prefix + rel)
    return foreign


def _foreign_nested(path: Path, kind: str, prefix: str) -> list[str]:
    """A folder where `kind` may nest: judged by its own manifest (without one it is the user's)."""
    manifest = read_manifest(path)
    if manifest is None:
        return _everything(path, prefix.rstrip("/"))
    if manifest["kind"] != kind:
        return [f"{prefix.rstrip('/')} (an idealseg {manifest['kind']} folder where a {kind} folder belongs)"]
    return _foreign_below(path, kind, manifest, prefix)


def _everything(path: Path, rel: str) -> list[str]:
    """`path` itself when empty or a file, else every path below it (a folder idealseg never makes)."""
    below = [f"{rel}/{p.relative_to(path).as_posix()}" for p in path.rglob("*") if not p.is_dir() or p.is_symlink()]
    return below or [rel + "/"]


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


def check_not_link(folder: str | Path) -> None:
    """Refuse an output given as a symbolic link: replacing or writing through it would touch a folder
    the user did not name."""
    if Path(folder).is_symlink():
        raise IdealsegError(f"{folder}: is a symbolic link; idealseg will not write through or replace it "
                            "(give the folder itself)")


def _only_lock(folder: Path) -> bool:
    return all(p.name == LOCK and lock_holder(p) is not None for p in folder.iterdir())


def check_replaceable(folder: str | Path, kind: str) -> None:
    """Raise unless `folder` is absent or empty, or is idealseg's `kind` holding only idealseg's files."""
    folder = Path(folder)
    check_not_link(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise IdealsegError(f"{folder}: exists and is not a folder; idealseg will not replace it")
    if _only_lock(folder):
        return
    manifest = read_manifest(folder)
    if manifest is None:
        raise IdealsegError(f"{folder}: exists and was not written by idealseg (no {MANIFEST}); "
                            "idealseg never deletes it: choose a new folder")
    if manifest.get("kind") != kind:
        raise IdealsegError(f"{folder}: is an idealseg {manifest.get('kind')} folder, not a {kind} folder; "
                            "idealseg will not replace one with the other: choose a new folder")
    foreign = foreign_files(folder, kind)
    if foreign:
        raise IdealsegError(f"{folder}: holds files idealseg did not write ({describe(foreign)}); "
                            "move them out or choose a new folder")


def replace_folder(path: Path, new: Path | None, kind: str) -> None:
    """Put `new` (a finished folder, or None for an empty one) where `path` is, deleting the old
    `path` only after checking, once it is moved aside, that it holds nothing but idealseg's `kind`:
    a file that appeared since the first check is never deleted (the old folder goes back). This
    process's lock moves into the new folder."""
    old = temporary(path, "old")
    os.replace(path, old)
    try:
        check_replaceable(old, kind)
    except IdealsegError:
        try:
            os.rename(old, path)
        except OSError:
            raise IdealsegError(f"{path}: files appeared in it while idealseg was writing, and another folder took "
                                f"its place; the old folder is kept as {old}") from None
        foreign = foreign_files(path, kind)
        raise IdealsegError(f"{path}: files idealseg did not write appeared in it while it was writing "
                            f"({describe(foreign)}); left as it was, nothing replaced") from None
    if new is None:
        os.mkdir(path, 0o777 & ~umask())
    else:
        os.replace(new, path)
    if (old / LOCK).is_file():
        os.replace(old / LOCK, path / LOCK)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False, kind: str = "dataset") -> Iterator[Path]:
    """Build a folder under a temporary name, mark it as idealseg's, and rename it into place.

    An existing destination is refused unless `overwrite` and it is idealseg's alone (see
    `ownership`); it is then replaced only after the new folder is complete. The destination is
    created (empty) and locked at the start, so a second writer, or a user making the same folder
    meanwhile, is met by the lock or by the check at replacement instead of being overwritten.
    """
    path = Path(path)
    check_not_link(path)
    if path.exists() and not (path.is_dir() and _only_lock(path)) and not overwrite:
        hint = "pass --overwrite to replace it" if owned(path, kind) else "choose a new folder"
        raise IdealsegError(f"{path}: output folder exists ({hint})")
    if overwrite:
        check_replaceable(path, kind)
    with writer_lock(path):
        remove_stale_temporaries(path)
        tmp = temporary(path, "dir")
        tmp.mkdir(mode=0o777 & ~umask())
        try:
            yield tmp
            write_manifest(tmp, kind)
            replace_folder(path, tmp, kind)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
