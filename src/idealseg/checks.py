"""Values a user hands idealseg, checked once where they enter (command line, Python API, YAML).

Each check returns the value as the library works with it, or raises `IdealsegError` with one line
naming the option and the problem: the CLI prints that line and exits 2, and the Python API raises
the same error with the same words, so a script and the command line fail alike. No torch here: the
CLI's `--help` and `idealseg.config` import this module.
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from idealseg.errors import IdealsegError

# numpy's generators (`default_rng`, `np.random.seed`) accept seeds 0 .. 2**32-1 as one integer; a
# negative seed is a ValueError there, so it is refused here, before anything is written.
SEED_MAX = 2**32 - 1
SEED_RANGE = f"a whole number from 0 to {SEED_MAX} (2**32-1, the seeds numpy accepts)"


class InvalidValue(IdealsegError, ValueError):
    """A value of the wrong type or outside its range. Also a ValueError, so that code which caught
    the ValueError a Python API function raised before it was checked here still catches it."""


def is_whole(value: Any) -> bool:
    """An integer that is not a bool (True is an int to Python, never a count or a seed to a user)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int or a float, not a bool (finite or not)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool: the numbers an option, a budget or a spacing can hold."""
    return is_real(value) and math.isfinite(value)


def whole_number(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int within [low, high], or a one-line error naming `name` and the range."""
    if is_whole(value) and (low is None or value >= low) and (high is None or value <= high):
        return int(value)
    if low is not None and high is not None:
        wanted = f"a whole number from {low} to {high}"
    elif low is not None:
        wanted = f"a whole number >= {low}"
    else:
        wanted = "a whole number"
    raise InvalidValue(f"{name} {value!r}: must be {wanted}")


def seed(value: Any, name: str = "--seed") -> int:
    """A random seed numpy and torch both accept; said once here so every entry point agrees."""
    if is_whole(value) and 0 <= value <= SEED_MAX:
        return int(value)
    raise InvalidValue(f"{name} {value!r}: must be {SEED_RANGE}")


def seeds_text(text: str, name: str = "--seeds") -> list[int]:
    """A comma-separated list of seeds from the command line, e.g. `0,1,2`."""
    values = []
    for item in str(text).split(","):
        try:
            values.append(int(item.strip()))
        except ValueError:
            raise InvalidValue(f"{name} {text!r}: {item.strip()!r} is not a seed; give seeds as 0,1,2, each "
                               f"{SEED_RANGE}") from None
    return [seed(v, name) for v in values]


def flag(value: Any, name: str) -> bool:
    """True or False only: a string such as "false" would otherwise count as true."""
    if isinstance(value, bool):
        return value
    raise InvalidValue(f"{name} {value!r}: must be True or False")


def path(value: Any, name: str) -> Path:
    """A file or folder given as a string or a path object (not, say, a number or a list)."""
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return Path(value)
    raise InvalidValue(f"{name} {value!r}: must be a file or folder path (a string or pathlib.Path)")


def output_path(value: Any, name: str) -> Path:
    """`path`, for something idealseg writes: its name must be UTF-8, since run folders record their
    paths as text (config.yaml, TensorBoard's event files) and a name that is not stops a run midway,
    its folder half made."""
    out = path(value, name)
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(out).decode("utf-8", "backslashreplace")
        raise InvalidValue(f"{name} {shown}: its name holds bytes that are not UTF-8; rename it (idealseg "
                           "records output paths as UTF-8 text)") from None
    return out


def optional_path(value: Any, name: str) -> Path | None:
    """`path`, or None where the option is not given."""
    return None if value is None else path(value, name)


def text(value: Any, name: str, choices: tuple[str, ...] = ()) -> str:
    """A string, one of `choices` when given."""
    if not isinstance(value, str):
        wanted = f"one of {', '.join(choices)}" if choices else "a string"
        raise InvalidValue(f"{name} {value!r}: must be {wanted}")
    if choices and value not in choices:
        raise InvalidValue(f"{name} {value!r}: must be one of {', '.join(choices)}")
    return value


def resume_or_overwrite(resume: Any, overwrite: Any) -> tuple[bool, bool]:
    """--resume continues a folder, --overwrite starts it again: both at once has no meaning, and
    silently preferring one would either throw a run away or keep one the user meant to replace."""
    resume, overwrite = flag(resume, "--resume"), flag(overwrite, "--overwrite")
    if resume and overwrite:
        raise InvalidValue("--resume and --overwrite: choose one (--resume continues the folder, "
                           "--overwrite starts it again)")
    return resume, overwrite


def device(value: Any) -> str:
    """A torch device this machine has (None: CUDA where there is one, else the CPU). torch is imported
    here only, so that the rest of this module stays light."""
    import torch

    if value is None or value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidValue(f"device {value!r}: not a device; use cpu or cuda (cuda:N for the N-th GPU)") from None
    if chosen.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InvalidValue(f"device {value!r}: this torch has no usable Apple GPU (MPS); use cpu")
        return str(value)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InvalidValue(f"device {value!r}: no CUDA GPU is visible here; use cpu")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise InvalidValue(f"device {value!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0 to "
                           f"cuda:{torch.cuda.device_count() - 1}")
    if chosen.type not in ("cpu", "cuda"):
        raise InvalidValue(f"device {value!r}: idealseg runs on cpu, cuda or mps")
    return str(value)


def optional_flag(value: Any, name: str) -> bool | None:
    """`flag`, or None where the option is left to the run's own choice."""
    return None if value is None else flag(value, name)
