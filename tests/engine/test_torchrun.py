"""`torchrun` never hangs: stages share one process group, a stuck rank fails within the timeout, and
workers end with the torchrun that started them (gloo on CPU, 2 processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import TORCHRUN

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--profile", "tiny", "--labeled", "2", "--threads", "1", "--val-every", "0"]


def torchrun(*args, fault: str = "", **env) -> subprocess.Popen:
    """`torchrun --nproc_per_node 2 -m idealseg ARGS` (through tests/torchrun_idealseg.py, which may
    make rank 1 slow or stuck: `fault`), its output in one pipe."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT),
           "IDEALSEG_TEST_FAULT": fault, **env}
    cmd = [*TORCHRUN, "tests.torchrun_idealseg", *map(str, args)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """The output of `proc`, or a failure naming the hang (torchrun is stopped, and so its workers)."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.terminate()  # torchrun passes SIGTERM on to its workers
        out = proc.communicate(timeout=60)[0]
        pytest.fail(f"torchrun hung for {timeout} s:\n{out[-3000:]}")


@pytest.mark.parametrize("fault", ["slow-second-stage", ""], ids=["rank-1-late", "plain"])
def test_train_under_torchrun_never_hangs(phantom, tmp_path, fault):
    """Rank 1 joining fine-tuning late made rank 0 connect to rank 1's address of the pre-training's
    process group (left and joined again between stages): a hang or a crash, every time; a plain try
    hits that order sometimes (one plain try: the forced order is what proves the fix every run)."""
    run = tmp_path / "run"
    proc = torchrun("train", phantom, *TRAIN, "--iterations", "4", "--out", run, fault=fault)
    out = finish(proc, timeout=90)
    assert proc.returncode == 0, out[-3000:]
    assert (run / "finetune" / "summary.json").exists() and out.count('"total_train_seconds"') == 1


def test_a_stuck_rank_fails_within_the_timeout(phantom, tmp_path):
    start = time.monotonic()
    proc = torchrun("finetune", phantom, *TRAIN, "--iterations", "20", "--out", tmp_path / "run",
                    fault="stuck-rank", IDEALSEG_DIST_TIMEOUT="4")
    out = finish(proc, timeout=90)
    assert proc.returncode != 0 and time.monotonic() - start < 60, out[-3000:]
    errors = [line for line in out.splitlines() if "error:" in line and "IDEALSEG_DIST_TIMEOUT" in line]
    assert len(errors) == 1 and "process 0 waited 4 s" in errors[0], out[-3000:]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
def test_killing_torchrun_ends_its_workers(phantom, tmp_path):
    run = tmp_path / "run"
    proc = torchrun("finetune", phantom, *TRAIN, "--iterations", "100000", "--checkpoint-every", "2", "--out", run)
    workers: list[int] = []
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end and proc.poll() is None and not (run / "checkpoints" / "last.pt").exists():
            time.sleep(0.1)
        workers = children(proc.pid)
        assert proc.poll() is None and len(workers) == 2, proc.communicate(timeout=60)[0][-3000:]
        proc.send_signal(signal.SIGKILL)  # no chance to stop them, as a kill -9 or a second Ctrl-C
        proc.wait()
        end = time.monotonic() + 15
        while time.monotonic() < end and any(map(alive, workers)):
            time.sleep(0.1)
        assert not any(map(alive, workers)), f"workers {[w for w in workers if alive(w)]} outlived torchrun"
    finally:
        for pid in workers:  # the workers this test started, should they have survived
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_refused(monkeypatch, value):
    from idealseg.engine import distributed
    from idealseg.errors import IdealsegError

    monkeypatch.setenv("IDEALSEG_DIST_TIMEOUT", value)
    with pytest.raises(IdealsegError, match="IDEALSEG_DIST_TIMEOUT"):
        distributed.timeout_s()
    monkeypatch.setenv("IDEALSEG_DIST_TIMEOUT", "90.5")
    assert distributed.timeout_s() == 90.5
