"""Distributed means the same: under torchrun the contrastive losses see every rank's negatives, so
two processes on two halves of a batch give one process's loss and gradients on the whole batch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch

from tests.ddp_reference import ContrastiveNet, batch

from ..conftest import TORCHRUN

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_equal_one_on_the_global_batch(tmp_path):
    model = ContrastiveNet()
    dense, global_ = model(*batch())
    (dense + global_).backward()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "ddp.pt"
    cmd = [*TORCHRUN, "tests.ddp_losses", str(out)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ddp = torch.load(out)
    assert torch.allclose(ddp["losses"], torch.stack([dense, global_]).detach(), atol=1e-5), ddp["losses"]
    for name, p in model.named_parameters():
        assert torch.allclose(ddp["grads"][name], p.grad, atol=1e-5), name


def test_without_gathering_the_losses_would_differ():
    """The check above can fail: half a batch alone has fewer negatives and another loss."""
    model = ContrastiveNet()
    full = model(*batch())
    half = model(*[t[:2] for t in batch()])
    assert not torch.allclose(full[1], half[1], atol=1e-3)
