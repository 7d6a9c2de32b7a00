"""What idealseg may delete or write over: only what it made itself, never an input.

`--overwrite` is the only way idealseg removes a folder a user can see, so it asks for proof of
ownership: a manifest (`.idealseg.json`) that idealseg writes into every folder it builds, saying
what kind of folder it is (dataset, run, demo, evaluation, benchmark). What each kind may hold is
declared here, once (`LAYOUTS`): file patterns whose `*` never crosses a `/` (one path level), and
the places where a folder of another kind may nest (a run's `eval_val`, a demo's dataset); a
dataset lists its files exactly in its manifest. A folder is idealseg's alone only if it carries
a manifest of the expected kind and every path below it is claimed: anything else (a user's file
at any depth, a symbolic link, an empty folder idealseg does not make, a manifest nested where
none belongs, a file that only looks like a temporary) is foreign, and a folder holding anything
foreign is never replaced. The check runs before anything is written, and again at the moment of
replacement (`replace_folder` moves the old folder aside first, then checks what it moved), so a
file that appears while a command runs is never deleted either.
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
from idealseg.errors import IdealsegError
from idealseg.writer_lock import LOCK, lock_holder, writer_lock

MANIFEST = ".idealseg.json"


@dataclass(frozen=True)
class Layout:
    """What a kind of folder may hold: `files` (patterns, one path level per `*`) and `folders`
    (pattern -> kind of the idealseg folder that may nest there, with its own manifest). `written`:
    the paths this folder's writer recorded as it wrote them (None in folders marked before idealseg
    recorded them): a file at a layout's name that idealseg never wrote is the user's."""
    files: tuple[str, ...] = ()
    folders: dict[str, str] = field(default_factory=dict)
    written: frozenset[str] | None = None


EVAL_FILES = ("per_volume.csv", "summary.json", "table.md")
REPORT_FILES = ("report/report.md", "report/pretrain_curves.png", "report/finetune_curves.png",
                "report/overlay_*.png")
RUN_FILES = ("config.yaml", "plan.json", "labelled.json", "progress.png", "log.csv", "summary.json", "encoder.pt",
             "env.json", "checkpoints/last.pt",
             "checkpoints/last.prev.pt", "checkpoints/best.pt", "tensorboard/events.out.tfevents.*", *REPORT_FILES)
BENCHMARK_FILES = ("results.csv", "report.md", "dice_vs_labels.png", "dice_vs_compute.png", "calibration.json",
                   "cells/*/result.json")
LAYOUTS = {
    "run": Layout(RUN_FILES, {"eval_*": "evaluation"}),
    "evaluation": Layout(EVAL_FILES),
    "demo": Layout((), {"dataset": "dataset", "run/pretrain": "run", "run/finetune": "run"}),
    "benchmark": Layout(BENCHMARK_FILES, {"cells/*/run": "run", "pretrain/*": "run", "calibrate-*/run": "run"}),
    "dataset": Layout(),  # its manifest lists its files exactly
}


def matches(rel: str, pattern: str) -> bool:
    """Whether path `rel` matches `pattern` level by level: `report/*` claims report/a.png, never
    report/drafts/a.tex (fnmatch's `*` would cross the `/`)."""
    parts, wanted = rel.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def write_manifest(folder: str | Path, kind: str, files: Iterable[str] | None = None) -> None:
    """Mark `folder` as idealseg's `kind`. A dataset records exactly the files it holds now (`files`
    None; it is complete when marked); other kinds' contents are declared in `LAYOUTS`."""
    folder = Path(folder)
    if files is None:
        files = [glob.escape(p.relative_to(folder).as_posix())  # exact names, even with [, *, ? in them
                 for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST]
    manifest = {"written_by": "idealseg", "kind": kind, "files": sorted(set(files)), "written": []}
    old = read_manifest(folder)
    if old is not None and old["kind"] == kind:  # a folder marked before idealseg recorded its writes keeps
        manifest["written"] = old.get("written")  # its layout's claims (None); others keep their record
        if manifest["written"] is None:
            del manifest["written"]
    with atomic_file(folder / MANIFEST) as f:
        json.dump(manifest, f, indent=1)


def record_written(folder: str | Path, paths: Iterable[str | Path], patterns: Iterable[str] = ()) -> None:
    """Add `paths` (inside `folder`) to what its manifest says idealseg writes there, so that `--overwrite`
    later deletes them and nothing else of that name (a user's own report/report.md stays theirs).
    Called before the write, so that a process killed between the two leaves nothing unclaimed;
    `patterns` for a writer that names its file itself (TensorBoard: time, host and process id)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or not isinstance(manifest.get("written"), list):
        return  # not idealseg's, or marked before it recorded writes: its layout alone says what it may hold
    names = {glob.escape(Path(p).relative_to(folder).as_posix()) for p in paths} | set(patterns)
    written = set(manifest.get("written", []))
    if names <= written:
        return
    manifest["written"] = sorted(written | names)
    with atomic_file(folder / MANIFEST) as f:
        json.dump(manifest, f, indent=1)


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of `folder`, or None when idealseg did not mark it (or the mark is unreadable)."""
    path = Path(folder) / MANIFEST
    if path.is_symlink():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("written_by") != "idealseg" or not isinstance(data.get("kind"), str)
            or not isinstance(data.get("files"), list) or not all(isinstance(f, str) for f in data["files"])):
        return None
    return data


def check_writable(folder: str | Path, names: Iterable[str]) -> None:
    """Refuse to write `names` (paths inside `folder`, an idealseg folder) where a file of that name
    exists that idealseg did not write there (its manifest does not record it)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    written = manifest.get("written") if manifest is not None else None
    theirs = [n for n in names if ((folder / n).exists() or (folder / n).is_symlink())
              and ((folder / n).is_symlink() or (isinstance(written, list)
                                                 and not any(matches(n, w) for w in written)))]
    if theirs:
        raise IdealsegError(f"{folder}: holds files idealseg did not write where it would write ({describe(theirs)}); "
                            "move them out")


def _claims(kind: str, manifest: dict | None) -> Layout:
    """What a folder of `kind` may hold: its layout, and for a dataset the files its manifest lists."""
    layout = LAYOUTS.get(kind, Layout())
    if kind == "dataset" and manifest is not None:
        return Layout(tuple(manifest["files"]), layout.folders)
    written = manifest.get("written") if manifest is not None else None
    if isinstance(written, list) and all(isinstance(w, str) for w in written):
        return Layout(layout.files, layout.folders, frozenset(written))
    return layout


def _folder_prefixes(layout: Layout) -> set[str]:
    """The sub-folders a layout's files and nested folders live in (idealseg makes them, maybe empty)."""
    prefixes = set()
    for pattern in (*layout.files, *layout.folders):
        parts = pattern.split("/")
        prefixes.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return prefixes


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
    return sorted(_foreign_below(folder, _claims(kind, manifest), ""))


def _foreign_below(folder: Path, layout: Layout, prefix: str) -> list[str]:
    """Walk `folder` (whose files `layout` claims), descending into nested idealseg folders."""
    foreign: list[str] = []
    dirs = _folder_prefixes(layout)
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
            elif not any(matches(rel, p) for p in layout.files) or (layout.written is not None and not any(
                    matches(rel, w) for w in layout.written)):
                foreign.append(prefix + rel)
    return foreign


def _foreign_nested(path: Path, kind: str, prefix: str) -> list[str]:
    """A folder where `kind` may nest: judged by its own manifest (or, at a name idealseg used before
    it marked folders, by the layout alone)."""
    manifest = read_manifest(path)
    if manifest is None:
        return _everything(path, prefix.rstrip("/"))
    if manifest["kind"] != kind:
        return [f"{prefix.rstrip('/')} (an idealseg {manifest['kind']} folder where a {kind} folder belongs)"]
    return _foreign_below(path, _claims(kind, manifest), prefix)


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
