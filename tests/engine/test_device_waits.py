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
    t.method.train()
    for _ in range(2):  # the first step allocates; the second is the steady state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            images, labels, n_l = t._batch()
            with torch.autocast("cuda", dtype=t.amp_dtype, enabled=t.amp_dtype is not None):
                loss = t.model(images, labels, n_l, 0.5)["loss"]
            t.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t.optimizer.step()
            t.method.on_step_end()
        finally:
            torch.cuda.set_sync_debug_mode("default")
