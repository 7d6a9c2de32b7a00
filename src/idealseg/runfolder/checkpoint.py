"""Atomic checkpoints: the newest is `last.pt`, the one before it `last.prev.pt` (a resume falls back to it,
engine/checkpointing.py)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from idealseg.atomic import atomic_path
from idealseg.errors import InputError


def save_checkpoint(state: dict, path: Path, keep_previous: bool = True) -> None:
    """Write to a temporary name, fsync, rename; the old file becomes `<name>.prev.pt`."""
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # torch reports a full disk as an "inline_container" RuntimeError
            raise InputError(path, f"could not write the checkpoint (disk full? {str(exc).splitlines()[0][:80]})") \
                from None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            os.replace(path, path.with_suffix(".prev.pt"))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint, or fail with one line naming the file."""
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:  # weights only: a checkpoint is data, and unpickling arbitrary objects would run their code
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(path, "holds Python objects besides weights, which idealseg never writes and will not "
                               "load (loading them could run code)") from None
    except Exception as exc:  # truncated zip, ...
        raise InputError(path, f"corrupt or truncated checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise InputError(path, f"not an idealseg checkpoint (a {type(state).__name__}, not a dict of weights)")
    return state


def latest_paths(run_dir: Path) -> tuple[Path, Path]:
    """last.pt and last.prev.pt of a run folder: what a resume tries, in that order."""
    last = run_dir / "checkpoints" / "last.pt"
    return last, last.with_suffix(".prev.pt")


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run can resume: a checkpoint to try, without reading it."""
    return any(p.exists() for p in latest_paths(run_dir))
