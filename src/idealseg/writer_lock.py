"""One writer per folder: `.idealseg.lock`, held with `fcntl.flock` and naming its holder.

Two runs writing one folder at once would interleave their checkpoints and configs, leaving a
folder that neither could resume. The writer holds an exclusive `flock` on the lock file, which the
operating system releases when the process ends however it ends, so a lock left by a killed writer
is simply taken again: no process ids to test. The file's JSON names the holder's host and process
for the one line a second writer stops with. A lock file of another host is not taken over (flock
may not reach across hosts on a network disk), nor is one idealseg cannot read (a user's file of
that name is never deleted): the line says how to remove it by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from idealseg.errors import IdealsegError, InputError

LOCK = ".idealseg.lock"


def lock_holder(path: Path) -> dict | None:
    """The holder recorded in a lock file (None when it is not idealseg's or not yet written)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "idealseg" else None


def _locked(fd: int, mode: int = fcntl.LOCK_EX) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def live_holder(folder: Path) -> dict | None:
    """The writer holding `folder`'s lock now (its flock is taken, or it is another host's), or None."""
    path = folder / LOCK
    holder = lock_holder(path)
    if holder is None or holder.get("host") != socket.gethostname():
        return holder
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return None if _locked(fd, fcntl.LOCK_SH) else holder
    finally:
        os.close(fd)


def _refusal(folder: Path, path: Path, holder: dict | None) -> IdealsegError:
    """The one line naming who holds `folder`'s lock (or why idealseg cannot tell)."""
    if holder is None:  # a user's file of that name
        return IdealsegError(f"{path}: a lock file idealseg cannot read; if no idealseg run is writing {folder}, "
                             "delete it")
    if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
        return IdealsegError(f"{folder}: this process is already writing it")
    who = f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
    return IdealsegError(f"{folder}: another idealseg run is writing it ({who}); wait for it to end, or, if it "
                         f"is gone, delete {path}")


def _open(path: Path) -> tuple[int, bool]:
    """(a descriptor of the lock file, whether this call created it): never truncates a file."""
    try:
        return os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR), False


def acquire(folder: Path, purpose: str = "write") -> int:
    """Take `folder`'s lock (the folder must exist) and return its descriptor, or raise naming the holder.
    `purpose` is recorded for those who find the lock held (a `report` of a run is not a training)."""
    path = folder / LOCK
    for _ in range(3):
        try:
            fd, created = _open(path)
        except FileNotFoundError:  # released between the two opens: try again
            continue
        if not _locked(fd):
            os.close(fd)
            raise _refusal(folder, path, lock_holder(path))
        if os.fstat(fd).st_ino != getattr(_stat(path), "st_ino", None):
            os.close(fd)  # its holder removed it as we took it: the lock is a new file now
            continue
        holder = lock_holder(path)
        if not created and (holder is None or holder.get("host") != socket.gethostname()):
            os.close(fd)  # a user's file, or another host's lock that flock may not see: left as it is
            raise _refusal(folder, path, holder)
        record = {"written_by": "idealseg", "host": socket.gethostname(), "pid": os.getpid(), "purpose": purpose,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv[:4])}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError as exc:  # a full disk, a file-size limit: no empty lock left to block the folder
            if created:
                path.unlink(missing_ok=True)
            os.close(fd)
            raise InputError(path, f"could not write the lock ({exc.strerror or exc})") from None
        return fd
    raise IdealsegError(f"{folder}: could not take its lock {path}; delete it if no run is writing the folder")


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def release(folder: Path, fd: int) -> None:
    """Remove the lock file if it is still the one this descriptor locks (it may have moved with its
    folder), then let the lock go."""
    path = folder / LOCK
    if getattr(_stat(path), "st_ino", None) == os.fstat(fd).st_ino:
        path.unlink(missing_ok=True)
    os.close(fd)


@contextlib.contextmanager
def writer_lock(folder: str | Path, purpose: str = "write") -> Iterator[None]:
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
    try:
        fd = acquire(folder, purpose)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    try:
        yield
    finally:
        release(folder, fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a refused or interrupted first run leaves nothing
