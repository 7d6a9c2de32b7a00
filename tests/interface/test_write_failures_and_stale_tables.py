"""A second hostile pass over the writers: a lock that cannot be written, an evaluation that cannot be
written, a report of a run that trained on after it was scored, a report mistaken for a training."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

from idealseg.errors import InputError
from idealseg.pipeline import run_stage
from idealseg.runfolder.folder import check_training
from idealseg.writer_lock import LOCK, writer_lock

from .test_data_safety import TINY
from .test_writers_locked import under_file_size_limit


@pytest.fixture(scope="module")
def run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("stale") / "run"
    run_stage("finetune", phantom, out, method="supervised", labeled="2", **TINY)
    return out


@pytest.mark.parametrize("command", [["prepare", "phantom", "{out}", "--patients", "3"],
                                     ["evaluate", "{run}", "--out", "{out}", "--threads", "1", "--device", "cpu"]])
def test_no_room_even_for_the_lock_leaves_nothing_behind(command, run, tmp_path):
    """`ulimit -f 0`: the lock's few bytes failed to write and an empty .idealseg.lock blocked the folder
    for every later command; now one line naming the lock, and no folder left."""
    out = tmp_path / "out"
    done = under_file_size_limit(0, *[a.format(out=out, run=run) for a in command])
    lines = [line for line in done.stderr.strip().splitlines() if "error" in line]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert LOCK in lines[0] and "File too large" in lines[0], lines
    assert not out.exists(), list(out.iterdir())


def test_a_lock_that_cannot_be_written_is_removed(tmp_path, monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("idealseg.writer_lock.os.pwrite", full)
    with pytest.raises(InputError, match="could not write the lock"), writer_lock(tmp_path / "x"):
        pass
    assert not (tmp_path / "x").exists()


def test_a_first_evaluation_that_cannot_be_written_leaves_no_folder(run, tmp_path):
    """`ulimit -f 1`: evaluate --out left a folder holding only its manifest, a half-written evaluation."""
    out = tmp_path / "scores"
    done = under_file_size_limit(1, "evaluate", run, "--out", out, "--threads", "1", "--device", "cpu")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert not out.exists(), list(out.iterdir())


def test_a_report_says_a_table_was_scored_before_the_run_trained_on(run, tmp_path, capsys):
    from idealseg.cli import main

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["evaluate", str(copy), "--threads", "1", "--device", "cpu"]) == 0
    summary = json.loads((copy / "eval_val" / "summary.json").read_text())
    assert summary["trained_steps"] == json.loads((copy / "summary.json").read_text())["steps"]
    assert main(["report", str(copy), "--cases", "0", "--threads", "1", "--device", "cpu"]) == 0
    assert "since replaced" not in (copy / "report" / "report.md").read_text()
    summary["trained_steps"] = None  # as if it had been scored while the run was still training
    (copy / "eval_val" / "summary.json").write_text(json.dumps(summary))
    with pytest.warns(UserWarning, match="scored while the run was training"):
        assert main(["report", str(copy), "--cases", "0", "--threads", "1", "--device", "cpu"]) == 0
    assert "on weights the run has since replaced" in (copy / "report" / "report.md").read_text()


def test_a_report_holding_the_run_is_not_taken_for_a_training(run):
    """evaluate while report ran said the run was 'still training' (the report's process)."""
    from multiprocessing import get_context

    ctx = get_context("fork")
    ready, done = ctx.Event(), ctx.Event()

    def report_like():
        with writer_lock(run, purpose="report"):
            ready.set()
            done.wait(30)

    proc = ctx.Process(target=report_like)
    proc.start()
    try:
        assert ready.wait(30)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_training(run, run / "checkpoints" / "last.pt")
        with writer_lock(run.parent / "other"):
            pass
    finally:
        done.set()
        proc.join(30)
