"""One writer per folder for every command that writes: predict, evaluate (a run's or a folder of
masks') and report take the lock prepare and training take, before the checks their writes rely on,
and a run still training is used with a warning (refused while it has no checkpoint yet)."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import idealseg
from idealseg.inference import predict as predict_module
from idealseg.writer_lock import LOCK, lock_holder

from ..conftest import copy_run
from .test_data_safety import run_cli, snapshot


@pytest.fixture(scope="module")
def run(supervised_run, tmp_path_factory):
    """This module's copy of the suite's tiny supervised run."""
    return copy_run(supervised_run, tmp_path_factory.mktemp("locked") / "run")


@pytest.fixture
def scan(phantom, tmp_path):
    """One NIfTI scan to segment, from the phantom's test case."""
    from idealseg.data.dataset import Dataset

    ds = Dataset(phantom)
    image = ds.load(ds.split("test")[0].id).image
    path = tmp_path / "scans" / "p1.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(np.transpose(image, (2, 1, 0)).astype(np.float32), np.diag([1.5, 1.5, 8.0, 1])),
             str(path))
    return path


HELD: list = []  # open lock files: their flock lasts until the test ends


@pytest.fixture(autouse=True)
def _let_go():
    yield
    while HELD:
        HELD.pop().close()


def hold(folder):
    """`folder`'s lock as another live idealseg process of this host holds it (pytest's parent, its
    flock taken here)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    lock.write_text(json.dumps({"written_by": "idealseg", "host": socket.gethostname(), "pid": os.getppid(),
                                "started": "now"}))
    handle = open(lock)
    fcntl.flock(handle, fcntl.LOCK_EX)
    HELD.append(handle)
    return lock


def test_a_second_predict_into_one_folder_stops(run, scan, tmp_path, capsys):
    out = tmp_path / "masks"
    lock = hold(out)
    code, line = run_cli(["predict", run, scan, out, "--threads", "1"], capsys)
    assert code == 2 and "another idealseg run is writing it" in line, line
    assert list(out.iterdir()) == [lock]


def test_predict_checks_its_outputs_under_the_lock(run, scan, tmp_path, capsys, monkeypatch):
    """The 'exists' checks of plan_outputs run while the lock is held: what they found stays true."""
    out, seen = tmp_path / "masks", []
    plan = predict_module.plan_outputs

    def spy(files, folder, overwrite=False):
        seen.append((lock_holder(out / LOCK) or {}).get("pid"))
        return plan(files, folder, overwrite)

    monkeypatch.setattr(predict_module, "plan_outputs", spy)
    code, _ = run_cli(["predict", run, scan, out, "--threads", "1"], capsys)
    assert code == 0 and seen == [os.getpid()]
    assert (out / "p1_seg.nii.gz").is_file() and not (out / LOCK).exists()


def test_a_second_evaluate_into_one_folder_stops(run, tmp_path, capsys):
    lock = hold(run / "eval_val")
    code, line = run_cli(["evaluate", run, "--threads", "1"], capsys)
    assert code == 2 and "another idealseg run is writing it" in line, line
    assert list((run / "eval_val").iterdir()) == [lock]
    lock.unlink()
    (run / "eval_val").rmdir()
    out = tmp_path / "scores"
    lock = hold(out)
    code, line = run_cli(["evaluate", run, "--out", out, "--threads", "1"], capsys)
    assert code == 2 and "another idealseg run is writing it" in line, line
    assert list(out.iterdir()) == [lock]


def test_a_second_scoring_of_masks_into_one_folder_stops(run, scan, tmp_path, capsys):
    masks, labels = tmp_path / "m", tmp_path / "l"
    assert run_cli(["predict", run, scan, masks, "--threads", "1"], capsys)[0] == 0
    labels.mkdir()
    shutil.copy(masks / "p1_seg.nii.gz", labels / "p1_gt.nii.gz")
    out = tmp_path / "scores"
    lock = hold(out)
    code, line = run_cli(["evaluate", masks, "--labels", labels, "--out", out], capsys)
    assert code == 2 and "another idealseg run is writing it" in line, line
    assert list(out.iterdir()) == [lock]


def test_report_takes_the_run_folders_lock(run, capsys):
    before = snapshot(run)
    lock = hold(run)
    try:
        code, line = run_cli(["report", run, "--cases", "1", "--threads", "1"], capsys)
    finally:
        lock.unlink()
    assert code == 2 and "another idealseg run is writing it" in line, line
    assert snapshot(run) == before


def test_predict_on_a_run_still_training_warns_and_uses_its_checkpoint(run, scan, tmp_path, capsys):
    lock = hold(run)
    try:
        with pytest.warns(UserWarning, match="still training") as seen:
            code, _ = run_cli(["predict", run, scan, tmp_path / "masks", "--threads", "1"], capsys)
    finally:
        lock.unlink()
    assert code == 0 and (tmp_path / "masks" / "p1_seg.nii.gz").is_file()
    lines = [str(w.message) for w in seen if "still training" in str(w.message)]
    assert len(lines) == 1 and "last.pt" in lines[0] and "may change" in lines[0], lines


def test_a_run_training_without_a_checkpoint_yet_is_refused(run, scan, tmp_path, capsys):
    young = tmp_path / "young"
    shutil.copytree(run, young)
    shutil.rmtree(young / "checkpoints")
    hold(young)
    code, line = run_cli(["predict", young, scan, tmp_path / "masks", "--threads", "1"], capsys)
    assert code == 2 and "still training" in line and "no last.pt yet" in line, line
    assert not (tmp_path / "masks").exists()


def under_file_size_limit(limit: int, *args) -> subprocess.CompletedProcess:
    """`idealseg ARGS` in a process whose files may not grow past `limit` bytes (ulimit -f)."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(idealseg.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "idealseg", *map(str, args)], preexec_fn=limited,
                          capture_output=True, text=True, env=env, timeout=300)


def test_prepare_past_the_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    """SIGXFSZ killed it inside HDF5 (h5py tracebacks, then a segmentation fault)."""
    done = under_file_size_limit(50_000, "prepare", "phantom", tmp_path / "ds", "--patients", "3")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"{tmp_path / 'ds' / 'cases'}" in lines[0] and "File too large" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_evaluate_out_past_the_file_size_limit_names_the_file(run, tmp_path):
    out = tmp_path / "scores"
    done = under_file_size_limit(1000, "evaluate", run, "--out", out, "--threads", "1", "--device", "cpu")
    lines = [line for line in done.stderr.strip().splitlines() if "error" in line]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{out}/" in lines[0] and "could not write (File too large)" in lines[0], lines
    assert not out.exists()  # a first evaluation that could not be written leaves no folder


def test_report_past_the_file_size_limit_names_the_file(run, tmp_path):
    done = under_file_size_limit(5000, "report", run, "--cases", "1", "--threads", "1", "--device", "cpu")
    lines = [line for line in done.stderr.strip().splitlines() if "error" in line]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{run / 'report'}/" in lines[0] and "File too large" in lines[0], lines
