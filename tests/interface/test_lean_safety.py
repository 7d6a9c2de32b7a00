"""The lean safety layer: a lock the operating system holds (no process ids to trust), and folders
of formats older than 0.1.0 refused with one line instead of being read."""

from __future__ import annotations

import json
import os
import socket

from idealseg.pipeline import run_stage
from idealseg.writer_lock import LOCK

from .test_data_safety import TINY


def test_a_lock_whose_process_id_was_reused_is_taken_over(phantom, tmp_path):
    """A killed writer's pid taken by another live process (here pytest's parent) held its folder
    locked for ever; a lock file no process holds a flock on is free, whatever pid it names."""
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"written_by": "idealseg", "host": socket.gethostname(), "pid": os.getppid(),
                                        "started": "yesterday"}))
    assert run_stage("finetune", phantom, out, method="supervised", labeled="2", **TINY)["steps"] == 4
    assert not (out / LOCK).exists()
