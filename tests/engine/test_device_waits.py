"""The training step queues work on the device without waiting for it; the losses are read back only at
log, validation and checkpoint steps (that a non-finite loss is still caught at its exact step:
tests/engine/test_training.py)."""

from __future__ import annotations

import pytest
import torch

from idealseg.config import resolve_config
from idealseg.engine.trainer import Trainer
from idealseg.methods import METHODS


def _trainer(phantom, out, method, **over):
    options = {"method": method, "dataset": str(phantom), "labeled": "2", "val_every": 0, "threads": 2, **over}
    return Trainer(resolve_config(METHODS[method].stage, "tiny", None, options), out)


def test_losses_are_logged_only_at_log_steps(phantom, tmp_path):
    t = _trainer(phantom, tmp_path / "run", "supervised", iterations=12, log_every=5, checkpoint_every=100)
    t.fit()
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [5, 10, 12]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: waits for the device exist only there")
@pytest.mark.parametrize("method", ["ideal-pretrain", "ideal", "supervised", "cps", "mean-teacher"])
def test_a_training_step_never_waits_for_the_gpu(phantom, tmp_path, method):
    """torch's sync debug mode turns every host-device wait (a read-back, a boolean index, a pageable
    copy's stream sync, a checked inverse) into an error, over batch, forward, backward and update."""
    t = _trainer(phantom, tmp_path / "run", method, iterations=4)
    _steady_steps(t, lambda: torch.cuda.set_sync_debug_mode("error"), lambda: torch.cuda.set_sync_debug_mode("default"))
    assert t.step == 2 and len(t._unread) == 2 and all(loss.is_cuda for loss in t._unread)


def _steady_steps(t: Trainer, watch, unwatch) -> None:
    """Two of the loop's own steps (engine/loop.py `_train_step`: schedule, batch, forward, backward,
    update), each under `watch`; the first step allocates, the second is the steady state."""
    t.method.train()
    t._unread = []  # the losses fit() would read back at its next log step
    for _ in range(2):
        if t.ctx.device.type == "cuda":
            torch.cuda.synchronize()
        watch()
        try:
            t._train_step()
        finally:
            unwatch()


def test_the_step_the_gpu_test_watches_runs_outside_fit(phantom, tmp_path):
    """The GPU test above drives `_train_step` by hand; on the CPU that hand-driven step still trains (so
    the GPU test cannot pass by skipping the step), and leaves its losses unread."""
    t = _trainer(phantom, tmp_path / "run", "supervised", iterations=4)
    before = [p.detach().clone() for p in t.model.parameters()]
    _steady_steps(t, lambda: None, lambda: None)
    assert t.step == 2 and len(t._unread) == 2
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, t.model.parameters(), strict=True))
