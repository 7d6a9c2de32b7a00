"""Write-then-rename helpers, so a killed process never leaves a half-written output behind.

A temporary's name carries the writer's process id and a mark computed from that name and id
(`.NAME.KIND-PID-MARK.tmp`), so the next run can tell a temporary left by a killed idealseg
process (removed) from one still being written by a live one (left alone), and from a user's
file that merely looks like a temporary (never touched: a name shape alone proves nothing).
Files and folders get the permissions the user's umask gives (0644/0755 under umask 022), not
the private 0600/0700 of `tempfile`, so colleagues on a shared server can read datasets and results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from idealseg.errors import InputError

_SHAPE = re.compile(r"^\.(.+)\.(file|dir|old)-(\d+)-([0-9a-f]{12})\.tmp")  # `.NAME.KIND-PID-MARK.tmp...`


def umask() -> int:
    """The process's umask (read by setting and restoring it: Python has no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mark(name: str, kind: str, pid: int) -> str:
    """What only idealseg's own temporaries carry: a keyed digest of the name, kind and process id."""
    return hashlib.blake2b(f"{name}\0{kind}\0{pid}".encode(errors="surrogateescape"), digest_size=6,
                           key=b"idealseg temporary").hexdigest()


def temporary(path: Path, kind: str, pid: int | None = None) -> Path:
    """This process's temporary sibling of `path` (`kind`: file, dir, or old for a replaced folder)."""
    pid = os.getpid() if pid is None else pid
    return path.parent / f".{path.name}.{kind}-{pid}-{_mark(path.name, kind, pid)}.tmp"


def temporary_owner(name: str) -> tuple[str, int] | None:
    """(the output's name, the writer's pid) for a temporary idealseg made, else None (a user's file)."""
    match = _SHAPE.match(name)
    if not match or match.group(4) != _mark(match.group(1), match.group(2), int(match.group(3))):
        return None
    return match.group(1), int(match.group(3))


def alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of `path` left by killed idealseg processes (never a live writer's)."""
    if not path.parent.is_dir():
        return
    for sibling in path.parent.iterdir():
        owner = temporary_owner(sibling.name)
        if owner and owner[0] == path.name and owner[1] != os.getpid() and not alive(owner[1]):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    """Open a temporary sibling of `path`; rename it onto `path` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path for writers that want a filename (torch.save, nibabel). A write
    that fails (a full disk, a file-size limit, a read-only folder) is one line naming `path`, never
    the temporary, nor no file at all (an OSError of a write carries no name)."""
    path = Path(path)
    tmp = temporary(path, "file")
    tmp = tmp.with_name(tmp.name + "".join(path.suffixes))  # writers that pick a format by suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename) not in (tmp, path, path.parent):
            raise  # another file's problem: its own name says where
        raise InputError(path, f"could not write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
