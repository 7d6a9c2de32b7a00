"""Run by tests/engine/test_torchrun.py under `torchrun --nproc_per_node 2`: idealseg's command line, with
rank 1 made slow or stuck at one point (IDEALSEG_TEST_FAULT), so that an order of events which timing
alone brings about only sometimes happens every time."""

from __future__ import annotations

import os
import time

from idealseg import cli
from idealseg.engine import distributed
from idealseg.engine.trainer import Trainer

RANK = int(os.environ.get("RANK", "0"))


def slow_second_stage() -> None:
    """Rank 1 reaches the fine-tuning stage 3 s after rank 0 (e.g. it loaded its slices later)."""
    setup, calls = distributed.setup, []

    def slow_setup(*args, **kwargs):
        calls.append(None)
        if RANK == 1 and len(calls) == 2:
            time.sleep(3)
        return setup(*args, **kwargs)

    distributed.setup = slow_setup


def stuck_rank() -> None:
    """Rank 1 stops answering before its third step (a deadlock, a hung file system)."""
    batch = Trainer._batch

    def stuck_batch(self):
        if RANK == 1 and self.step == 2:
            time.sleep(3600)
        return batch(self)

    Trainer._batch = stuck_batch


FAULTS = {"slow-second-stage": slow_second_stage, "stuck-rank": stuck_rank, "": lambda: None}

if __name__ == "__main__":
    FAULTS[os.environ.get("IDEALSEG_TEST_FAULT", "")]()
    raise SystemExit(cli.main())
