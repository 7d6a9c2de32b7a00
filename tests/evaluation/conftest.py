"""A tiny trained run (IDEAL pre-training then BCP on the phantom), one per test module that asks."""

from __future__ import annotations

import pytest

from idealseg.pipeline import train

TINY = {"profile": "tiny", "threads": 1, "iterations": 6, "checkpoint_every": 3, "val_every": 3}


@pytest.fixture(scope="module")
def run(phantom, tmp_path_factory):
    """A `train` folder; module-scoped, so that what one module writes into it never meets another's."""
    out = tmp_path_factory.mktemp("runs") / "train"
    train(phantom, out, labeled="2", **TINY)
    return out
