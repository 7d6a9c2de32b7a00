"""Budgets count steps by default: the same command and seed make the same run on any machine, at any
load, and the run says up front what its budget costs here."""

from __future__ import annotations

import time

import pytest
import torch

from idealseg.config import PROFILES, resolve_config
from idealseg.engine.trainer import Trainer


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_no_profile_stops_on_the_clock(profile):
    for stage in ("pretrain", "finetune"):
        assert not PROFILES[profile][stage].get("time_budget"), (profile, stage)


def test_a_slow_machine_makes_the_same_steps_and_weights(phantom, tmp_path, monkeypatch, capsys):
    """A machine three times slower (its clock read as running 3x faster) makes the same steps and weights."""
    options = {"method": "supervised", "dataset": str(phantom), "labeled": "2", "val_every": 0, "threads": 1,
               "iterations": 15}
    Trainer(resolve_config("finetune", "tiny", None, options), tmp_path / "fast").fit()
    real = time.perf_counter
    start = real()
    monkeypatch.setattr(time, "perf_counter", lambda: start + 3 * (real() - start))
    Trainer(resolve_config("finetune", "tiny", None, options), tmp_path / "slow").fit()
    monkeypatch.undo()
    fast, slow = (torch.load(tmp_path / r / "checkpoints" / "last.pt", weights_only=False) for r in ("fast", "slow"))
    assert fast["step"] == slow["step"] == 15
    assert all(torch.equal(fast["model"][k], slow["model"][k]) for k in fast["model"])
    assert "s a step on this machine" in capsys.readouterr().out


def test_a_time_budget_says_the_steps_it_will_make(phantom, tmp_path, capsys):
    options = {"method": "supervised", "dataset": str(phantom), "labeled": "2", "val_every": 0, "threads": 1,
               "iterations": 100000, "time_budget": 1.0}
    Trainer(resolve_config("finetune", "tiny", None, options), tmp_path / "run").fit()
    out = capsys.readouterr().out
    assert "the time budget of 1 s ends the run after about" in out and "steps left take about" not in out


def test_train_help_shows_each_stages_step_budget(capsys):
    from idealseg.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "fine-tuning1800,pre-training550" in "".join(capsys.readouterr().out.split())  # wrapped anywhere
