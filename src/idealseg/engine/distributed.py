"""torch.distributed setup when launched by `torchrun` (gloo on CPU, NCCL on CUDA), else one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from idealseg.errors import IdealsegError


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


def setup(prefer_cuda: bool = True) -> Context:
    """Join the torchrun process group when launched by it (NCCL on CUDA, gloo on CPU), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = prefer_cuda and torch.cuda.is_available()
    if world <= 1:
        return Context(torch.device("cuda" if cuda else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda and local >= torch.cuda.device_count():
        raise IdealsegError(
            f"torchrun started process {local} on this node but only {torch.cuda.device_count()} GPU(s) are "
            "visible: use --nproc_per_node at most the GPU count, or CUDA_VISIBLE_DEVICES= for CPU processes")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    return Context(torch.device(f"cuda:{local}" if cuda else "cpu"), rank, world, local)


def barrier(ctx: Context) -> None:
    """Wait for every process (a no-op alone), e.g. until rank 0 has made the run folder."""
    if ctx.distributed:
        dist.barrier()


def broadcast_flag(ctx: Context, value: bool) -> bool:
    """Rank 0's decision (e.g. 'stop now: time is up') shared with every rank."""
    if not ctx.distributed:
        return value
    t = torch.tensor([1.0 if value else 0.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return bool(t.item())


def broadcast_value(ctx: Context, value: float) -> float:
    """Rank 0's number on every rank: with a wall-clock budget each rank measures its own time, and
    ranks whose learning rates or stage switches differ would drift apart."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return float(t.item())


def gather_objects(ctx: Context, obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (a plain list when not distributed)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    """Leave the process group, so a library caller can train again in the same process."""
    if dist.is_initialized():
        dist.destroy_process_group()
