"""Ownership that cannot over-claim, and one writer per folder.

Each case is a way a user's file was lost before: a manifest pattern crossing `/`, a link or an
empty folder idealseg did not see, a user's file shaped like a temporary, a folder made while a
command ran, an evaluation or benchmark written over a user's files, an idealseg folder nested
where it does not belong, an output given as a link, and two runs writing one folder at once.
Every test checks the one-line error and that the user's files are all still there.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from idealseg.atomic import temporary
from idealseg.benchmark import run_benchmark
from idealseg.errors import IdealsegError
from idealseg.ownership import MANIFEST, foreign_files, matches, record_written, write_manifest
from idealseg.pipeline import run_stage
from idealseg.writer_lock import LOCK

from ..conftest import copy_run
from .test_data_safety import TINY, run_cli, snapshot


@pytest.fixture
def run(supervised_run, tmp_path):
    """A trained tiny supervised run of this test's own, to write into."""
    return copy_run(supervised_run, tmp_path / "run")


def test_patterns_match_one_level():
    assert matches("report/a.png", "report/*") and not matches("report/drafts/a.tex", "report/*")
    assert matches("cells/x/result.json", "cells/*/result.json") and not matches("cells/x/y/result.json",
                                                                                   "cells/*/result.json")


@pytest.mark.parametrize("users", ["report/drafts/chapter3.tex", "report/notes.md", "tensorboard/analysis.ipynb",
                                   "eval_paper/summary.json", "checkpoints/my_epoch3.pt", "mydata/.idealseg.json"])
def test_run_overwrite_keeps_the_users_files_at_any_depth(run, phantom, users, capsys):
    path = run / users
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name == MANIFEST:  # an idealseg dataset the user keeps inside the run folder
        write_manifest(path.parent, "dataset")
    else:
        path.write_text("the user's")
    before = snapshot(run)
    code, line = run_cli(["finetune", phantom, "--out", run, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2", "--val-every", "0", "--overwrite"], capsys)
    assert code == 2 and users.split("/")[0] in line, line
    assert snapshot(run) == before


def test_links_and_empty_folders_are_the_users(tmp_path, capsys):
    ds = tmp_path / "ds"
    assert run_cli(["prepare", "phantom", ds, "--patients", "3"], capsys)[0] == 0
    (tmp_path / "elsewhere").mkdir()
    (ds / "my_link").symlink_to(tmp_path / "elsewhere")
    (ds / "my_empty_dir").mkdir()
    code, line = run_cli(["prepare", "phantom", ds, "--patients", "3", "--overwrite"], capsys)
    assert code == 2 and "my_link" in line and "my_empty_dir" in line, line
    assert (ds / "my_link").is_symlink() and (ds / "my_empty_dir").is_dir()
    (ds / "my_link").unlink()
    (ds / "my_empty_dir").rmdir()
    (ds / "cases" / "file_link.h5").symlink_to(tmp_path / "elsewhere")
    code, line = run_cli(["prepare", "phantom", ds, "--patients", "3", "--overwrite"], capsys)
    assert code == 2 and "file_link.h5" in line and (ds / "cases" / "file_link.h5").is_symlink(), line


def test_a_file_shaped_like_a_temporary_is_the_users(run, phantom, tmp_path, capsys):
    draft = run / ".draft.file-1.tmp"
    draft.write_text("the user's")
    stale_looking = tmp_path / f".ds.dir-{2**22 + 7}.tmp"  # the old temporary shape, a dead pid
    stale_looking.mkdir()
    code, line = run_cli(["finetune", phantom, "--out", run, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2", "--val-every", "0", "--overwrite"], capsys)
    assert code == 2 and ".draft.file-1.tmp" in line and draft.exists(), line
    assert run_cli(["prepare", "phantom", tmp_path / "ds", "--patients", "3"], capsys)[0] == 0
    assert stale_looking.is_dir()
    ours = temporary(tmp_path / "ds", "dir", pid=2**22 + 7)  # idealseg's own, of a dead process: removed
    ours.mkdir()
    assert run_cli(["prepare", "phantom", tmp_path / "ds", "--patients", "3", "--overwrite"], capsys)[0] == 0
    assert not ours.exists() and stale_looking.is_dir()


def test_a_folder_made_while_prepare_runs_is_never_deleted(tmp_path, monkeypatch, capsys):
    from idealseg import ownership

    out = tmp_path / "ds"
    original = ownership.write_manifest

    def meddling(folder, *args, **kwargs):  # the user writes into OUT while prepare runs
        (out / "notes.txt").write_text("mine")
        return original(folder, *args, **kwargs)

    monkeypatch.setattr(ownership, "write_manifest", meddling)
    code, line = run_cli(["prepare", "phantom", out, "--patients", "3"], capsys)
    assert code == 2 and "notes.txt" in line, line
    assert snapshot(out) == {"notes.txt": b"mine"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_evaluate_out_inside_the_run_never_overwrites_the_users_summary(run, capsys):
    mine = run / "eval_paper"
    mine.mkdir()
    (mine / "summary.json").write_text('{"mine": true}')
    code, line = run_cli(["evaluate", run, "--out", mine], capsys)
    assert code == 2 and "eval_paper" in line, line
    assert (mine / "summary.json").read_text() == '{"mine": true}'
    assert run_cli(["evaluate", run], capsys)[0] == 0 and run_cli(["evaluate", run], capsys)[0] == 0
    assert run_cli(["evaluate", run, "--out", run / "eval_again"], capsys)[0] == 0
    assert run_cli(["evaluate", run, "--out", run / "eval_again"], capsys)[0] == 0


def test_benchmark_out_never_writes_over_a_users_folder(phantom, tmp_path, capsys):
    out = tmp_path / "paper"
    out.mkdir()
    (out / "report.md").write_text("my report")
    (out / "results.csv").write_text("my,results")
    spec = {"dataset": str(phantom), "profile": "tiny", "split": "val", "labeled": ["2"], "seeds": [0], "out": str(out),
            "methods": [{"name": "supervised", "method": "supervised", "options": {"iterations": 2, "val_every": 0}}]}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(IdealsegError, match="not an idealseg benchmark"):
        run_benchmark(path)
    assert snapshot(out) == {"report.md": b"my report", "results.csv": b"my,results"}
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "new", target_is_directory=True)
    with pytest.raises(IdealsegError, match="symbolic link"):
        run_benchmark(path, out=link)


def test_overwrite_refuses_an_idealseg_dataset_nested_in_a_run(run, phantom, capsys):
    shutil.copytree(phantom, run / "my_dataset")
    code, line = run_cli(["finetune", phantom, "--out", run, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2", "--val-every", "0", "--overwrite"], capsys)
    assert code == 2 and "my_dataset" in line and (run / "my_dataset" / "dataset.json").exists(), line


@pytest.mark.parametrize("command", ["finetune", "pretrain", "train", "prepare", "evaluate", "demo"])
def test_an_output_given_as_a_link_is_refused(run, phantom, tmp_path, command, capsys):
    target = tmp_path / "target"
    shutil.copytree(run, target)
    before = snapshot(target)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    args = {"finetune": ["finetune", phantom, "--out", link, "--method", "supervised", "--labeled", "2"],
            "pretrain": ["pretrain", phantom, "--out", link],
            "train": ["train", phantom, "--out", link, "--labeled", "2"],
            "prepare": ["prepare", "phantom", link, "--patients", "3"],
            "evaluate": ["evaluate", run, "--out", link],
            "demo": ["demo", "--out", link]}[command]
    tail = [] if command in ("prepare", "evaluate", "demo") else ["--profile", "tiny", "--iterations", "2"]
    for flag in (["--overwrite"], ["--resume"]) if command not in ("prepare", "evaluate") else ([],):
        code, line = run_cli([*args, *tail, *flag], capsys)
        assert code == 2 and "symbolic link" in line, line
    assert snapshot(target) == before and link.is_symlink()


def test_a_second_writer_meets_the_lock(phantom, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    lock = out / LOCK  # held by a live process of this host (pytest's parent; its flock taken here)
    lock.write_text(json.dumps({"written_by": "idealseg", "host": socket.gethostname(), "pid": os.getppid(),
                                "started": "now"}))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, line = run_cli(["finetune", phantom, "--out", out, "--method", "supervised", "--labeled", "2",
                              "--profile", "tiny", "--iterations", "2", "--resume"], capsys)
    assert code == 2 and "another idealseg run is writing it" in line and str(os.getppid()) in line, line
    assert list(out.iterdir()) == [lock]


def test_a_lock_no_process_holds_is_taken_over(phantom, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"written_by": "idealseg", "host": socket.gethostname(), "pid": 2**22 + 9,
                                        "started": "yesterday"}))
    assert run_stage("finetune", phantom, out, method="supervised", labeled="2", **TINY)["steps"] == 4
    assert not (out / LOCK).exists()
    (out / LOCK).write_text(json.dumps({"written_by": "idealseg", "host": "another-host", "pid": 1,
                                        "started": "today"}))
    code, line = run_cli(["finetune", phantom, "--out", out, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "6", "--resume"], capsys)
    assert code == 2 and "another-host" in line and "delete" in line, line


def test_two_runs_into_one_folder_at_once(phantom, tmp_path, capsys):
    """A second process on a folder that one is training into stops with one line; once the first is
    killed, the system has let its lock go and the folder resumes (the second and the resume run in this
    process: another process than the first's, without a start-up of their own)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "idealseg", "finetune", str(phantom), "--out", str(out), "--method", "supervised",
           "--labeled", "2", "--profile", "tiny", "--threads", "1", "--val-every", "0", "--checkpoint-every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*cmd, "--iterations", "100000"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 120
        while not (out / "checkpoints" / "last.pt").exists() and time.time() < end and first.poll() is None:
            time.sleep(0.05)
        assert (out / LOCK).exists(), "the first run never started"
        code, line = run_cli([*cmd[3:], "--iterations", "100000", "--resume"], capsys)
        assert code == 2 and "another idealseg run is writing it" in line, line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    code, line = run_cli([*cmd[3:], "--iterations", "2", "--resume"], capsys)
    assert code == 0, line
    assert not (out / LOCK).exists()


def test_only_the_layouts_files_are_claimed(run):
    assert foreign_files(run, "run") == []
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "overlay_p1.png").write_bytes(b"png")
    (run / "notes").mkdir()
    assert foreign_files(run, "run") == ["notes/", "report/overlay_p1.png"]  # not recorded as idealseg's
    record_written(run, [run / "report" / "overlay_p1.png"])
    assert foreign_files(run, "run") == ["notes/"]


def test_a_checkpoint_holding_code_is_never_loaded(phantom, tmp_path, capsys):
    witness = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(witness), "w"))

    torch.save({"encoder": Payload()}, tmp_path / "evil.pt")
    code, line = run_cli(["finetune", phantom, "--out", tmp_path / "run", "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2", "--init", tmp_path / "evil.pt"], capsys)
    assert code == 2 and "will not load" in line, line
    assert not witness.exists() and not (tmp_path / "run").exists()


def test_a_users_experiment_folder_with_a_config_yaml_is_not_a_run(phantom, tmp_path, capsys):
    mine = tmp_path / "myexp"
    mine.mkdir()
    for name, text in (("config.yaml", "my: config\n"), ("log.csv", "a,b\n"), ("summary.json", '{"x": 1}')):
        (mine / name).write_text(text)
    before = snapshot(mine)
    code, line = run_cli(["finetune", phantom, "--out", mine, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2", "--overwrite"], capsys)
    assert code == 2 and snapshot(mine) == before, line


def test_evaluate_never_writes_into_a_users_eval_val(run, capsys):
    shutil.rmtree(run / "eval_val", ignore_errors=True)
    (run / "eval_val").mkdir()
    (run / "eval_val" / "summary.json").write_text('{"mine": 1}')
    code, line = run_cli(["evaluate", run], capsys)
    assert code == 2 and "eval_val" in line, line
    assert (run / "eval_val" / "summary.json").read_text() == '{"mine": 1}'


def test_a_lock_file_idealseg_cannot_read_is_never_deleted(phantom, tmp_path, capsys):
    out = tmp_path / "uj"
    out.mkdir()
    (out / LOCK).write_text("notes")
    os.utime(out / LOCK, (time.time() - 3600,) * 2)
    code, line = run_cli(["finetune", phantom, "--out", out, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2"], capsys)
    assert code == 2 and "cannot read" in line and (out / LOCK).read_text() == "notes", line


def test_a_prepare_killed_before_it_wrote_is_run_again(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()  # what a killed prepare leaves: the folder it created, holding its lock
    (out / LOCK).write_text(json.dumps({"written_by": "idealseg", "host": socket.gethostname(), "pid": 2**22 + 3,
                                        "started": "before"}))
    assert run_cli(["prepare", "phantom", out, "--patients", "3"], capsys)[0] == 0
    assert (out / "dataset.json").exists() and not (out / LOCK).exists()


@pytest.mark.parametrize("where", ["run", "dataset", "link"])
def test_predict_writes_masks_only_into_a_folder_of_their_own(run, phantom, tmp_path, where, capsys):
    from ..conftest import write_nifti

    scans = tmp_path / "scans"
    write_nifti(scans / "a.nii.gz", np.random.default_rng(0).random((32, 32, 3)).astype(np.float32))
    (tmp_path / "masks").mkdir()
    out = {"run": run, "dataset": phantom / "cases", "link": tmp_path / "link"}[where]
    if where == "link":
        out.symlink_to(tmp_path / "masks", target_is_directory=True)
    before = snapshot(out)
    code, line = run_cli(["predict", run, scans, out], capsys)
    assert code == 2 and ("idealseg" in line or "symbolic link" in line), line
    assert snapshot(out) == before


def test_predict_overwrite_replaces_only_masks(run, tmp_path, capsys):
    from ..conftest import write_nifti

    scans, masks = tmp_path / "scans", tmp_path / "masks"
    write_nifti(scans / "a.nii.gz", np.random.default_rng(0).random((32, 32, 3)).astype(np.float32))
    masks.mkdir()
    (masks / "a_seg.nii.gz").write_text("my notes, named like a mask")
    code, line = run_cli(["predict", run, scans, masks, "--overwrite"], capsys)
    assert code == 2 and "not a NIfTI mask" in line, line
    assert (masks / "a_seg.nii.gz").read_text() == "my notes, named like a mask"


@pytest.mark.parametrize("users", ["report/report.md", "report/overlay_mine.png", "encoder.pt", "checkpoints/best.pt",
                                   "tensorboard/events.out.tfevents.my_notes"])
def test_a_users_file_at_a_name_idealseg_writes_is_still_the_users(run, phantom, users, capsys):
    path = run / users
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("the user's")
    code, line = run_cli(["finetune", phantom, "--out", run, "--method", "supervised", "--labeled", "2",
                          "--profile", "tiny", "--iterations", "2", "--val-every", "0", "--overwrite"], capsys)
    assert code == 2 and users in line, line
    assert path.read_text() == "the user's"


def test_evaluate_and_report_never_write_over_a_users_file_of_their_name(run, capsys):
    from idealseg.evaluation.report import write_report

    assert run_cli(["evaluate", run], capsys)[0] == 0
    (run / "eval_val" / "table.md").write_text("my table")
    (run / "eval_val" / ".idealseg.json").write_text(  # as if idealseg had not written table.md
        json.dumps({**json.loads((run / "eval_val" / ".idealseg.json").read_text()), "written": ["summary.json"]}))
    code, line = run_cli(["evaluate", run], capsys)
    assert code == 2 and "table.md" in line and (run / "eval_val" / "table.md").read_text() == "my table", line
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "report.md").write_text("my report")
    with pytest.raises(IdealsegError, match="report.md"):
        write_report(run, "val")
    assert (run / "report" / "report.md").read_text() == "my report"


def test_a_run_overwrites_what_it_wrote_itself(run, phantom, capsys):
    from idealseg.evaluation.report import write_report

    write_report(run, "val")
    assert run_cli(["evaluate", run], capsys)[0] == 0
    run_stage("finetune", phantom, run, method="supervised", labeled="2", overwrite=True, **TINY)
    assert (run / "checkpoints" / "last.pt").exists() and not (run / "report").exists()


@pytest.mark.parametrize("edit", [{"files": [None]}, {"kind": 5}, {"files": "cases/a.h5"}, {"written": [3]}])
def test_a_manifest_edited_by_hand_is_one_line(tmp_path, edit, capsys):
    ds = tmp_path / "ds"
    assert run_cli(["prepare", "phantom", ds, "--patients", "3"], capsys)[0] == 0
    manifest = json.loads((ds / MANIFEST).read_text())
    (ds / MANIFEST).write_text(json.dumps({**manifest, **edit}))
    before = snapshot(ds)
    code, line = run_cli(["prepare", "phantom", ds, "--patients", "3", "--overwrite"], capsys)
    assert code in (0, 2) and "Traceback" not in line, line
    if code == 2:
        assert snapshot(ds) == before and str(ds) in line, line
