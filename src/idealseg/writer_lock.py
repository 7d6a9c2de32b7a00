"""One writer per folder: a lock file naming the writer's host and process.

Two runs writing one folder at once would interleave their checkpoints and configs, leaving a
folder that neither could resume. The first writer creates `.idealseg.lock` (an exclusive create,
so exactly one of two racing writers gets it); a second meets it and stops with one line naming
the holder. A lock whose process is gone (same host, no such pid) is stale and taken over; one of
another host cannot be checked from here, nor can a lock file idealseg cannot read (a user's file
of that name is never deleted), so the line says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from idealseg.atomic import alive
from idealseg.errors import IdealsegError

LOCK = ".idealseg.lock"


def lock_holder(path: Path) -> dict | None:
    """The holder recorded in a lock file (None when it is not idealseg's or not yet written)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "idealseg" else None


def _stale(holder: dict) -> bool:
    """A lock of this host whose process is gone (killed before it could remove it)."""
    return holder.get("host") == socket.gethostname() and not alive(int(holder.get("pid", 0)))


def live_holder(holder: dict) -> bool:
    """Whether a lock's writer may still be writing (alive here, or of another host: not checkable)."""
    return not _stale(holder)


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"written_by": "idealseg", "host": socket.gethostname(), "pid": os.getpid(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv[:4])}, f)
    return True


def acquire(folder: Path) -> Path:
    """Take `folder`'s lock (the folder must exist), or raise naming the run that holds it."""
    path = folder / LOCK
    for _ in range(3):
        if _create(path):
            return path
        holder = lock_holder(path)
        if holder is None:  # not idealseg's JSON: a user's file of that name, or a writer killed mid-create
            raise IdealsegError(f"{path}: a lock file idealseg cannot read; if no idealseg run is writing "
                                f"{folder}, delete it")
        if holder.get("host") == socket.gethostname() and int(holder.get("pid", 0)) == os.getpid():
            raise IdealsegError(f"{folder}: this process is already writing it")
        if not _stale(holder):
            who = f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
            raise IdealsegError(f"{folder}: another idealseg run is writing it ({who}); wait for it to end, "
                                f"or, if it is gone, delete {path}")
        path.unlink(missing_ok=True)  # stale: its writer was killed
    raise IdealsegError(f"{folder}: could not take its lock {path}; delete it if no run is writing the folder")


def release(path: Path) -> None:
    """Remove the lock if it is still this process's."""
    holder = lock_holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def writer_lock(folder: str | Path) -> Iterator[None]:
    """Hold `folder`'s lock for the block, creating the folder if absent (and removing it again if
    the block leaves it empty, so a refused command leaves no trace). A folder that is a symbolic
    link is refused: idealseg writes into folders it can see, not through links."""
    folder = Path(folder)
    if folder.is_symlink():
        raise IdealsegError(f"{folder}: is a symbolic link; idealseg will not write through it (give the folder "
                            "itself)")
    if folder.exists() and not folder.is_dir():
        raise IdealsegError(f"{folder}: exists and is not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir()
        created = True
    except FileExistsError:
        created = False
    lock = acquire(folder)
    try:
        yield
    finally:
        release(lock)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a refused or interrupted first run leaves nothing
