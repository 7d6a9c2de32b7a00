"""A tiny trained run (IDEAL pre-training then BCP on the phantom), trained once, copied per test module."""

from __future__ import annotations

import pytest

from idealseg.pipeline import train

from ..conftest import copy_run

TINY = {"profile": "tiny", "threads": 1, "iterations": 6, "checkpoint_every": 3, "val_every": 3}


@pytest.fixture(scope="session")
def trained_train_run(phantom, tmp_path_factory):
    """The `train` folder itself, trained once for the session; never written to (see `run`)."""
    out = tmp_path_factory.mktemp("runs") / "train"
    train(phantom, out, labeled="2", **TINY)
    return out


@pytest.fixture(scope="module")
def run(trained_train_run, tmp_path_factory):
    """A `train` folder; a copy per module, so that what one module writes into it never meets another's
    (its fine-tuning's recorded `init` still names the original's pre-training, which nothing writes)."""
    return copy_run(trained_train_run, tmp_path_factory.mktemp("runs") / "train")
