"""Contrastive losses across processes: every rank's keys as negatives, gradients kept.

Under torchrun each process holds a shard of the global batch. A contrastive loss computed on the
shard alone would see fewer negatives than one process on the whole batch, a different method. So
keys are gathered from every rank with `torch.distributed.nn.functional.all_gather`, whose backward
sends each rank the gradient of its own keys, and the loss is scaled so that, after DDP averages
gradients over ranks, the step equals one process's on the global batch (tests/engine/test_distributed.py).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, number of processes); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_keys(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's `x` concatenated along dim 0 (with gradient), and this rank's offset into it."""
    rank, size = world()
    if size == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous())), rank * x.shape[0]


def global_mean(local_sum: torch.Tensor, local_count: int | torch.Tensor) -> torch.Tensor:
    """The mean over every rank's terms, as this rank's share: local sum x world / global count.

    DDP averages gradients over ranks, so the averaged step is that of the global mean, whatever the
    number of terms (valid locations) each rank happens to hold.
    """
    _, size = world()
    count = torch.as_tensor(local_count, dtype=torch.float32, device=local_sum.device)
    if size > 1:
        count = count.clone()
        dist.all_reduce(count)
    return local_sum * size / count.clamp_min(1.0)
