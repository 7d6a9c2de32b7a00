"""`env.json`: what a run ran on, written when it starts, so a number can be traced to its machine.

Timings in this project are only comparable on the same CPU model (machines differ up to 3x, some
have native bfloat16 and some do not), so every run folder records the processor, the device, the
library versions, the source commit and the command line, and whether the CPU has native bfloat16
(the precision policy itself is precision.py's).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

import idealseg
from idealseg.atomic import atomic_file
from idealseg.precision import cpu_has_native_bf16

__all__ = ["cpu_model", "environment", "write_environment"]


def cpu_model() -> str:
    """The processor's marketing name (/proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_commit() -> str | None:
    """The git commit of the idealseg source tree, when it is a checkout (None for an installed wheel)."""
    root = Path(idealseg.__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return out.stdout.strip() + ("+uncommitted changes" if dirty else "")


def environment(device: torch.device, world: int = 1, autocast: str = "off", compiled: str = "off") -> dict:
    """The record env.json holds (see the module docstring)."""
    cuda = torch.cuda.is_available()
    return {
        "idealseg": idealseg.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processes": world,
        "autocast": autocast,
        "compile": compiled,
        "cpu": cpu_model(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": source_commit(),
        "command": sys.argv,
    }


def write_environment(run_dir: Path, device: torch.device, world: int = 1, autocast: str = "off",
                      compiled: str = "off") -> None:
    """Write env.json into a run folder when its run starts."""
    with atomic_file(run_dir / "env.json") as f:
        json.dump(environment(device, world, autocast, compiled), f, indent=1)

