"""The lean safety layer: a lock the operating system holds (no process ids to trust), and folders
of formats older than 0.1.0 refused with one line instead of being read."""

from __future__ import annotations

import json
import os
import socket

import pytest
import yaml

from idealseg.benchmark import run_benchmark
from idealseg.errors import IdealsegError
from idealseg.ownership import MANIFEST
from idealseg.pipeline import run_stage
from idealseg.writer_lock import LOCK

from .test_data_safety import TINY, run_cli, snapshot


def test_a_lock_whose_process_id_was_reused_is_taken_over(phantom, tmp_path):
    """A killed writer's pid taken by another live process (here pytest's parent) held its folder
    locked for ever; a lock file no process holds a flock on is free, whatever pid it names."""
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"written_by": "idealseg", "host": socket.gethostname(), "pid": os.getppid(),
                                        "started": "yesterday"}))
    assert run_stage("finetune", phantom, out, method="supervised", labeled="2", **TINY)["steps"] == 4
    assert not (out / LOCK).exists()


@pytest.fixture
def run(phantom, tmp_path):
    out = tmp_path / "run"
    run_stage("finetune", phantom, out, method="supervised", labeled="2", **TINY)
    return out


def test_a_run_manifest_without_its_written_record_is_one_line(run, phantom, capsys):
    """Before 0.1.0 a run's manifest recorded no files; its layout's names were taken as proof, so a
    user's file at one of them was deleted by --overwrite. Now such a folder is refused, untouched."""
    manifest = json.loads((run / MANIFEST).read_text())
    del manifest["written"]
    (run / MANIFEST).write_text(json.dumps(manifest))
    before = snapshot(run)
    code, line = run_cli(["finetune", phantom, "--out", run, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2", "--val-every", "0", "--overwrite"], capsys)
    assert code == 2 and "older than 0.1.0" in line and "train it again" in line, line
    assert snapshot(run) == before


def test_a_results_folder_without_a_manifest_is_the_users(phantom, tmp_path):
    """A benchmark's results folder from before they carried a manifest was known by cells/*/result.json."""
    out = tmp_path / "results"
    (out / "cells" / "x").mkdir(parents=True)
    (out / "cells" / "x" / "result.json").write_text("{}")
    spec = {"dataset": str(phantom), "profile": "tiny", "split": "val", "labeled": ["2"], "seeds": [0], "out": str(out),
            "methods": [{"name": "supervised", "method": "supervised", "options": {"iterations": 2, "val_every": 0}}]}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(IdealsegError, match="not an idealseg benchmark"):
        run_benchmark(tmp_path / "bench.yaml")
    assert snapshot(out) == {"cells/x/result.json": b"{}"}
