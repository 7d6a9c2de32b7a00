"""Runs are portable between machines: the machine options a run recorded (threads, device) are where
it trained, never a refusal on another machine; and a resumed run keeps every row of its log.csv."""

from __future__ import annotations

import csv
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

import idealseg
from idealseg.cli import main
from idealseg.config.options import max_threads
from idealseg.pipeline import run_stage

TINY = {"profile": "tiny", "threads": 1, "iterations": 4, "checkpoint_every": 2, "val_every": 2}


@pytest.fixture(scope="module")
def trained(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("portable") / "run"
    run_stage("finetune", phantom, out, method="supervised", labeled="2", **TINY)
    return out


def elsewhere_device() -> str:
    """A device this machine does not have (the run 'trained' on another machine's GPU)."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


@pytest.fixture
def moved(trained, tmp_path):
    """The run as trained on a bigger machine: more threads than this one allows, a GPU it lacks."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(threads=max_threads() + 60, device=elsewhere_device())
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def test_a_run_from_a_bigger_machine_is_used_here(moved, phantom, tmp_path, capsys):
    assert isinstance(idealseg.load(moved, device="cpu"), idealseg.Segmenter)
    assert main(["evaluate", str(moved), "--threads", "1", "--device", "cpu"]) == 0
    scan = tmp_path / "p.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 3), dtype=np.float32),
                             np.diag([1.5, 1.5, 8.0, 1])), str(scan))
    assert main(["predict", str(moved), str(scan), str(tmp_path / "masks"), "--threads", "1", "--device", "cpu"]) == 0
    assert main(["report", str(moved), "--cases", "0", "--threads", "1", "--device", "cpu"]) == 0


def test_a_resume_here_takes_the_command_lines_threads_and_device(moved, phantom, recwarn):
    summary = run_stage("finetune", phantom, moved, resume=True, iterations=6, threads=1, device="cpu")
    assert summary["steps"] == 6
    assert not [w for w in recwarn if "threads" in str(w.message) or "device" in str(w.message)]
    config = yaml.safe_load((moved / "config.yaml").read_text())
    assert config["threads"] == 1 and config["device"] == "cpu"


def test_a_resume_here_says_in_one_line_each_what_it_changed(moved, phantom):
    with pytest.warns(UserWarning) as seen:
        assert run_stage("finetune", phantom, moved, resume=True, iterations=6)["steps"] == 6
    said = [str(w.message) for w in seen if "config.yaml" in str(w.message)]
    assert sum(f"threads {max_threads() + 60}" in m for m in said) == 1, said
    assert sum("default device" in m for m in said) == 1, said
    config = yaml.safe_load((moved / "config.yaml").read_text())
    assert config["threads"] == 0 and config["device"] != elsewhere_device()  # torch's default here


def rows(run) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_resuming_a_finished_run_keeps_its_last_training_row(trained, phantom, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = rows(run)
    assert run_stage("finetune", phantom, run, resume=True, method="supervised", labeled="2", **TINY)["steps"] == 4
    assert [(r["step"], r.get("loss")) for r in rows(run)] == [(r["step"], r.get("loss")) for r in before]


def test_a_validation_after_the_last_checkpoint_keeps_that_steps_training_row(phantom, tmp_path):
    """Checkpoint at the last step, validation only after it (4 is no multiple of 3): both rows kept."""
    run = tmp_path / "run"
    run_stage("finetune", phantom, run, method="supervised", labeled="2", **{**TINY, "val_every": 3})
    last = [r for r in rows(run) if r["step"] == "4"]
    assert any(r.get("loss") for r in last) and any(r.get("val_dice") for r in last), last
