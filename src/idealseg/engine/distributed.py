"""torch.distributed setup when launched by `torchrun` (gloo on CPU, NCCL on CUDA), else one process.

A process joins the process group once, at its first stage, and leaves it at exit. Leaving it after
pre-training and joining again for fine-tuning gave the new group the old one's name, so a rank
could read another rank's address of the old group from torchrun's store and connect to it: the
first barrier of fine-tuning then waited forever (about one `train` in two). Every collective has a
timeout (IDEALSEG_DIST_TIMEOUT seconds), so a stuck or dead rank ends the run with one line, and a
worker dies with the torchrun that started it.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from idealseg import checks
from idealseg.errors import IdealsegError
from idealseg.signals import exit_with_launcher

TIMEOUT_ENV = "IDEALSEG_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0  # rank 0 validates while the others wait: minutes on a CPU for large volumes
# what gloo says when a peer does not answer or has gone (a plain RuntimeError, not a DistError)
_TIMED_OUT = re.compile(r"timed out|timeout", re.I)
_LOST = re.compile(r"connection (reset|closed|refused)|closed by peer|broken pipe|socket", re.I)


@dataclass
class Context:
    """This process's place under torchrun (rank, world size, device), or a single process's."""
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and reports (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains together."""
        return self.world > 1


def setup(device: str = "auto") -> Context:
    """Join the torchrun process group when launched by it (NCCL on CUDA, gloo on CPU), else run alone,
    on `device` (the run's option: auto, cpu, cuda, cuda:N, mps; checked, one line if this machine has
    no such device). Under torchrun each process takes the GPU of its local rank, or the CPU.

    Called by every stage; the group is joined by the first call and kept until the process exits."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(torch.device(checks.device(device)))
    if device not in ("auto", "cpu", "cuda"):
        raise IdealsegError(f"--device {device}: under torchrun each process takes the GPU of its local rank; "
                            "use --device cuda, cpu or auto")
    cuda = device != "cpu" and torch.device(checks.device(device)).type == "cuda"
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda and local >= torch.cuda.device_count():
        raise IdealsegError(
            f"torchrun started process {local} on this node but only {torch.cuda.device_count()} GPU(s) are "
            "visible: use --nproc_per_node at most the GPU count, or CUDA_VISIBLE_DEVICES= for CPU processes")
    if not dist.is_initialized():
        exit_with_launcher()
        with named_errors():
            dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s()))
        atexit.register(cleanup)
    if cuda:
        torch.cuda.set_device(local)
    return Context(torch.device(f"cuda:{local}" if cuda else "cpu"), rank, world, local)


def timeout_s() -> float:
    """How long a rank waits for the others in one collective: IDEALSEG_DIST_TIMEOUT, else 10 minutes."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise IdealsegError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds above 0")
    return value


@contextmanager
def named_errors() -> Iterator[None]:
    """A collective that timed out, or whose peers left, as one IdealsegError line naming this process.

    The CLI prints rank 0's errors only (every rank fails alike); this one may be another rank's
    alone (rank 0 being the stuck one), so such a rank prints its line itself."""
    try:
        yield
    except RuntimeError as exc:
        if not (isinstance(exc, dist.DistError) or dist.is_initialized()):
            raise
        text = re.sub(r"^\[[^]]*\]\s*", "", str(exc).strip())  # gloo's source location
        text = text.splitlines()[0][:200] if text else type(exc).__name__
        rank = os.environ.get("RANK", "0")
        if _TIMED_OUT.search(text):
            error = IdealsegError(
                f"torchrun process {rank} waited {timeout_s():g} s for the other processes, which did not answer: "
                f"one is stuck (set {TIMEOUT_ENV}=SECONDS to wait longer); {text}")
        elif isinstance(exc, dist.DistError) or _LOST.search(text):
            error = IdealsegError(f"torchrun process {rank} lost the other processes: one has died; {text}")
        else:
            raise
        if rank != "0":
            print(f"idealseg: error: {error}", file=sys.stderr, flush=True)
        raise error from exc


def barrier(ctx: Context) -> None:
    """Wait for every process (a no-op alone), e.g. until rank 0 has made the run folder."""
    if ctx.distributed:
        with named_errors():
            dist.barrier()


def broadcast_flag(ctx: Context, value: bool) -> bool:
    """Rank 0's decision (e.g. 'stop now: time is up') shared with every rank."""
    if not ctx.distributed:
        return value
    t = torch.tensor([1.0 if value else 0.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    with named_errors():
        dist.broadcast(t, 0)
    return bool(t.item())


def broadcast_value(ctx: Context, value: float) -> float:
    """Rank 0's number on every rank: with a wall-clock budget each rank measures its own time, and
    ranks whose learning rates or stage switches differ would drift apart."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    with named_errors():
        dist.broadcast(t, 0)
    return float(t.item())


def gather_objects(ctx: Context, obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (a plain list when not distributed)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world
    with named_errors():
        dist.all_gather_object(out, obj)
    return out


@contextmanager
def together(ctx: Context) -> Iterator[None]:
    """Run a block on every rank and fail on every rank if it failed on any.

    A rank that raises before a collective leaves the others waiting in it (torchrun ends them only
    once the failed rank has exited, and the CLI prints rank 0's error only). The block must hold no
    collective; its end is one, which every rank reaches: a failed rank raises its own error, the
    others the first failed rank's message."""
    try:
        yield
    except Exception as exc:
        share_failure(ctx, exc)
        raise
    share_failure(ctx, None)


def share_failure(ctx: Context, exc: BaseException | None) -> None:
    """Tell every rank whether any failed; raise on the ranks that did not, naming the first that did."""
    if not ctx.distributed:
        return
    messages = gather_objects(ctx, None if exc is None else _one_line(exc))
    failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    if exc is None and failed:
        rank, message = failed[0]
        raise IdealsegError(message if rank == 0 else f"torchrun process {rank}: {message}")


def _one_line(exc: BaseException) -> str:
    """An error as the CLI would say it: an IdealsegError's message, else its type and first line."""
    if isinstance(exc, IdealsegError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def cleanup() -> None:
    """Leave the process group (at exit, once: see the module's docstring)."""
    if dist.is_initialized():
        dist.destroy_process_group()
