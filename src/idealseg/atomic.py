"""Write-then-rename helpers, so a killed process never leaves a half-written output behind.

Temporary names carry the writer's process id, so that the next run can tell a temporary left by
a killed process (removed) from one still being written by a live one (left alone). Files and
folders get the permissions the user's umask gives (0644/0755 under umask 022), not the private
0600/0700 of `tempfile`, so colleagues on a shared server can read datasets and results.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

TEMPORARY = re.compile(r"^\.(.+)\.(?:file|dir|old)-(\d+)\.tmp")  # `.NAME.KIND-PID.tmp...`: whose, and which process


def umask() -> int:
    """The process's umask (read by setting and restoring it: Python has no getter)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary(path: Path, kind: str) -> Path:
    """This process's temporary sibling of `path` (`kind`: dir, or old for a replaced folder)."""
    return path.parent / f".{path.name}.{kind}-{os.getpid()}.tmp"


def _alive(pid: int) -> bool:
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
        match = TEMPORARY.match(sibling.name)
        pid = int(match.group(2)) if match and match.group(1) == path.name else None
        if pid is not None and pid != os.getpid() and not _alive(pid):
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
    """Yield a temporary sibling path for writers that want a filename (torch.save, nibabel)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.file-{os.getpid()}.tmp{''.join(path.suffixes)}"
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
