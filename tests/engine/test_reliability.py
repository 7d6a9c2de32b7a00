"""Kill -9 and resume, torchrun scale-out on CPU (gloo), determinism of splits and metrics."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from idealseg.data.budgets import select_budget
from idealseg.data.dataset import Dataset
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.pipeline import run_stage, train

from ..conftest import TORCHRUN

TRAIN = ["--profile", "tiny", "--labeled", "2", "--threads", "1", "--checkpoint-every", "2", "--val-every", "0"]


def idealseg(*args, stdout=subprocess.PIPE, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "idealseg", *map(str, args)], env=env,
                            stdout=stdout, stderr=subprocess.STDOUT, text=True, **kwargs)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (a checkpoint beyond the first exists)."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None and not ready():
        time.sleep(0.05)
    if proc.poll() is not None:
        raise AssertionError(f"the run ended (exit {proc.returncode}) before it could be killed:\n"
                             f"{proc.stdout.read()[-3000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def final_weights(run: Path) -> dict:
    return torch.load(run / "finetune" / "checkpoints" / "last.pt", weights_only=False)["model"]


def test_kill_during_pretraining_and_finetuning_then_resume(phantom, tmp_path):
    """24 steps a stage: a kill lands after the second checkpoint (step 4) with 20 steps to spare."""
    args = ["train", phantom, *TRAIN, "--iterations", "24"]
    with open(tmp_path / "ref.log", "w") as log:  # trained alongside the killed run, one thread each
        reference = idealseg(*args, "--out", tmp_path / "ref", stdout=log)
    run = tmp_path / "run"
    proc = idealseg(*args, "--out", run)
    kill_when(proc, lambda: (run / "pretrain" / "checkpoints" / "last.prev.pt").exists())
    assert not (run / "pretrain" / "summary.json").exists()
    proc = idealseg(*args, "--out", run, "--resume")
    kill_when(proc, lambda: (run / "finetune" / "checkpoints" / "last.prev.pt").exists())
    assert (run / "pretrain" / "summary.json").exists() and not (run / "finetune" / "summary.json").exists()
    proc = idealseg(*args, "--out", run, "--resume")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0 and "resumed" in out, out
    assert reference.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()
    a, b = final_weights(tmp_path / "ref"), final_weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_two_processes_on_cpu(phantom, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo, also on a 1-GPU machine
    cmd = [*TORCHRUN, "idealseg", "finetune", str(phantom),
           "--out", str(tmp_path / "ddp"), *TRAIN, "--iterations", "6", "--val-every", "3"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count('"steps": 6') == 1  # only rank 0 reports
    run = tmp_path / "ddp"
    assert (run / "checkpoints" / "last.pt").exists() and (run / "summary.json").exists()
    single = tmp_path / "single"  # the same command in one process (in this one: no second start-up)
    run_stage("finetune", phantom, single, profile="tiny", labeled="2", threads=1, checkpoint_every=2, val_every=0,
              iterations=2, device="cpu")
    header = lambda p: next(csv.reader(open(p / "log.csv")))  # noqa: E731
    assert header(run) == header(single) + ["val_dice"] or set(header(single)) <= set(header(run))


def test_same_seed_same_split_subset_and_metrics(phantom, tmp_path):
    ds = Dataset(phantom)
    assert select_budget(ds, "2", seed=4).patients == select_budget(ds, "2", seed=4).patients
    opts = dict(profile="tiny", labeled="2", threads=1, iterations=4, val_every=0, checkpoint_every=2)
    train(phantom, tmp_path / "a", seed=3, **opts)
    train(phantom, tmp_path / "b", seed=3, **opts)
    sa, sb = evaluate_run(tmp_path / "a", "val"), evaluate_run(tmp_path / "b", "val")
    assert sa["classes"] == sb["classes"]
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: AMP path not exercised")
def test_amp_on_cuda(phantom, tmp_path):
    summary = train(phantom, tmp_path / "gpu", profile="tiny", labeled="2", iterations=4, val_every=0)
    assert summary["finetune"]["steps"] == 4


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    from idealseg.engine import distributed
    from idealseg.errors import IdealsegError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(IdealsegError, match="only 1 GPU"):
        distributed.setup()
