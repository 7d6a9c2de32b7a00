"""Run by tests/engine/test_distributed.py under `torchrun --nproc_per_node 2` (gloo, CPU): each rank computes
the contrastive losses on its half of a fixed global batch through a DDP-wrapped network, and rank 0
saves the losses (averaged over ranks) and DDP's averaged gradients for the test to compare."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tests.ddp_reference import ContrastiveNet, batch

if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    tensors = batch()
    half = tensors[0].shape[0] // world
    shard = [t[rank * half:(rank + 1) * half] for t in tensors]
    model = DistributedDataParallel(ContrastiveNet())
    dense, global_ = model(*shard)
    (dense + global_).backward()
    terms = torch.stack([dense.detach(), global_.detach()])
    dist.all_reduce(terms)
    if rank == 0:
        grads = {name: p.grad for name, p in model.module.named_parameters()}
        torch.save({"losses": terms / world, "grads": grads}, sys.argv[1])
    dist.barrier()  # no rank tears gloo down while another is still in a collective (seen: SIGABRT under load)
    dist.destroy_process_group()
