"""Never lose a user's data: the data-loss cases of the reliability issue, each as a named test.

Each test sets up the user's files, runs the command a careless or hostile user would type, and
checks both the one-line error (exit 2) and that every file the user had is still there, unchanged.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat

import nibabel as nib
import numpy as np
import pytest

from idealseg.atomic import temporary
from idealseg.cli import main
from idealseg.data.importers.phantom import phantom_raw
from idealseg.ownership import MANIFEST
from idealseg.pipeline import run_stage

from ..conftest import SUPERVISED, copy_run, write_nifti, write_ssl4mis

TINY = {k: v for k, v in SUPERVISED.items() if k not in ("method", "labeled")}  # the suite's supervised run


def run_cli(args: list, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, (err[-1] if err else "")


def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what the user must find again afterwards."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def scan(seed: int) -> np.ndarray:
    """A phantom volume stored (x, y, z) as ACDC stores its scans."""
    return np.transpose(phantom_raw(seed, 0, 0)[0], (2, 1, 0)).astype(np.float32)


def nifti_source(root):
    """A user's nnU-Net-style folder: two labelled cases and a notes file of their own."""
    rng = np.random.default_rng(0)
    for case in ("case_a", "case_b"):
        write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", rng.random((12, 12, 3)).astype(np.float32))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", rng.integers(0, 2, (12, 12, 3)).astype(np.uint8))
    (root / "notes.txt").write_text("my annotations log\n")
    return root


@pytest.fixture(scope="module")
def trained(supervised_run, tmp_path_factory):
    """This module's copy of the suite's tiny supervised run (trained with TINY)."""
    return copy_run(supervised_run, tmp_path_factory.mktemp("safety") / "run")


def test_prepare_into_its_own_source_is_refused(tmp_path, capsys):
    src = nifti_source(tmp_path / "scans")
    before = snapshot(src)
    code, line = run_cli(["prepare", "nifti", src, src, "--overwrite"], capsys)
    assert code == 2 and "is the input" in line, line
    assert snapshot(src) == before


def test_prepare_into_a_parent_of_its_source_is_refused(tmp_path, capsys):
    parent = tmp_path / "project"
    src = nifti_source(parent / "scans")
    (parent / "unrelated").mkdir()
    (parent / "unrelated" / "thesis.tex").write_text("chapter 1")
    before = snapshot(parent)
    code, line = run_cli(["prepare", "nifti", src, parent, "--overwrite"], capsys)
    assert code == 2 and "contains the input" in line, line
    assert snapshot(parent) == before


def test_prepare_inside_its_source_is_refused(tmp_path, capsys):
    src = nifti_source(tmp_path / "scans")
    code, line = run_cli(["prepare", "nifti", src, src / "dataset"], capsys)
    assert code == 2 and "lies inside the input" in line, line
    assert not (src / "dataset").exists()


def test_overwrite_refuses_a_folder_idealseg_did_not_write(tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "paper.docx").write_bytes(b"years of work")
    code, line = run_cli(["prepare", "phantom", out, "--patients", "3", "--overwrite"], capsys)
    assert code == 2 and "was not written by idealseg" in line, line
    assert (out / "paper.docx").read_bytes() == b"years of work"
    code, line = run_cli(["prepare", "phantom", out, "--patients", "3"], capsys)  # the hint must not say --overwrite
    assert code == 2 and "--overwrite" not in line and "choose a new folder" in line, line


def test_overwrite_refuses_an_idealseg_folder_holding_the_users_files(tmp_path, capsys):
    out = tmp_path / "ds"
    assert run_cli(["prepare", "phantom", out, "--patients", "3"], capsys)[0] == 0
    assert (out / MANIFEST).is_file()
    (out / "my_notes.txt").write_text("keep me")
    code, line = run_cli(["prepare", "phantom", out, "--patients", "3", "--overwrite"], capsys)
    assert code == 2 and "my_notes.txt" in line, line
    assert (out / "my_notes.txt").read_text() == "keep me"
    (out / "my_notes.txt").unlink()
    assert run_cli(["prepare", "phantom", out, "--patients", "3", "--overwrite"], capsys)[0] == 0


def test_demo_overwrite_keeps_the_users_files(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.csv").write_text("1,2,3")
    code, line = run_cli(["demo", "--out", out, "--overwrite", "--profile", "tiny"], capsys)
    assert code == 2 and "was not written by idealseg" in line, line
    assert snapshot(out) == {"data.csv": b"1,2,3"}
    code, line = run_cli(["demo", "--out", out, "--resume", "--profile", "tiny"], capsys)
    assert code == 2 and snapshot(out) == {"data.csv": b"1,2,3"}, line


def test_predict_never_writes_over_its_input(trained, tmp_path, capsys):
    path = write_nifti(tmp_path / "scan.nii.gz", scan(1))
    before = path.read_bytes()
    code, line = run_cli(["predict", trained, path, path], capsys)
    assert code == 2 and "is an input scan" in line, line
    code, line = run_cli(["predict", trained, path, path, "--overwrite"], capsys)
    assert code == 2 and path.read_bytes() == before, line


def test_predict_into_its_input_folder_keeps_manual_masks(trained, tmp_path, capsys):
    folder = tmp_path / "patients"
    write_nifti(folder / "p1.nii.gz", scan(1))
    manual = write_nifti(folder / "p1_seg.nii.gz", np.ones((8, 8, 3), np.uint8))
    before = manual.read_bytes()
    code, line = run_cli(["predict", trained, folder, folder], capsys)
    assert code == 2 and "p1_seg.nii.gz: exists" in line, line
    assert manual.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["p1.nii.gz", "p1_seg.nii.gz"]
    out = tmp_path / "masks"
    with pytest.warns(UserWarning, match=r"skipping 1 file\(s\) named as masks \(p1_seg.nii.gz\)"):
        assert main(["predict", str(trained), str(folder), str(out)]) == 0
    # the manual mask was not segmented: one mask, and the quality table beside it
    assert sorted(p.name for p in out.iterdir()) == ["idealseg_quality.csv", "p1_seg.nii.gz"]


def test_predict_refuses_two_inputs_with_one_mask_name(trained, tmp_path, capsys):
    folder = tmp_path / "scans"
    write_nifti(folder / "a.nii", scan(1))
    write_nifti(folder / "a.nii.gz", scan(2))
    code, line = run_cli(["predict", trained, folder, tmp_path / "out"], capsys)
    assert code == 2 and "two inputs would write this mask" in line, line
    assert not (tmp_path / "out").exists()


def test_predict_is_the_same_from_any_directory_and_without_the_dataset(phantom, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(phantom, work / "ds")
    monkeypatch.chdir(work)
    run_stage("finetune", "ds", "run", method="supervised", labeled="2", **TINY)  # relative paths, as typed
    path = write_nifti(tmp_path / "scan.nii.gz", scan(3) * 700.0)
    assert main(["predict", "run", str(path), "here.nii.gz"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(work / "run"), "--out", "ev"]) == 0  # the dataset is found from anywhere
    shutil.rmtree(work / "ds")  # the dataset is gone: the run folder alone must be enough
    assert main(["predict", str(work / "run"), str(path), "there.nii.gz"]) == 0
    here = nib.load(work / "here.nii.gz").get_fdata()
    there = nib.load(elsewhere / "there.nii.gz").get_fdata()
    assert np.array_equal(here, there)


def test_resume_with_other_options_is_refused_and_keeps_the_config(phantom, supervised_run, tmp_path, capsys):
    run = copy_run(supervised_run, tmp_path / "run")
    config = (run / "config.yaml").read_bytes()
    for flag, value in (("--labeled", "1"), ("--method", "ideal"), ("--target-spacing", "none")):
        args = ["finetune", phantom, "--out", run, "--resume", "--profile", "tiny", "--method", "supervised",
                "--labeled", "2", flag, value]
        code, line = run_cli(args, capsys)
        assert code == 2 and "but this run was started with" in line, line
    assert (run / "config.yaml").read_bytes() == config


def test_evaluate_best_without_a_best_checkpoint_is_an_error(trained, capsys):
    code, line = run_cli(["evaluate", trained, "--checkpoint", "best", "--out", trained.parent / "ev"], capsys)
    assert code == 2 and "no best checkpoint" in line, line
    assert not (trained.parent / "ev").exists()


def test_a_run_that_fails_at_start_leaves_no_folder(phantom, tmp_path, capsys):
    pre = tmp_path / "pre"
    run_stage("pretrain", phantom, pre, **{**TINY, "channels": [4, 8, 8, 8, 8]})
    run = tmp_path / "run"
    args = ["finetune", phantom, "--out", run, "--profile", "tiny", "--labeled", "2", "--init", pre]
    code, line = run_cli(args, capsys)
    assert code == 2 and "does not fit this run's network" in line, line
    assert not run.exists()


def test_killed_prepare_leaves_no_temporary_for_good(tmp_path, capsys):
    out = tmp_path / "ds"
    stale = temporary(out, "dir", pid=2**22 + 12345)  # a pid no live process has
    (stale / "cases").mkdir(parents=True)
    live = tmp_path / f".ds.dir-{os.getpid()}.tmp"  # the old name shape, without idealseg's mark: a user's
    live.mkdir()
    assert run_cli(["prepare", "phantom", out, "--patients", "3"], capsys)[0] == 0
    assert not stale.exists() and live.exists()


def test_outputs_follow_the_users_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert run_cli(["prepare", "phantom", tmp_path / "ds", "--patients", "3"], capsys)[0] == 0
    finally:
        os.umask(old)
    ds = tmp_path / "ds"
    assert stat.S_IMODE(ds.stat().st_mode) == 0o755
    assert stat.S_IMODE((ds / "dataset.json").stat().st_mode) == 0o644


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "ds" / "cases" / "x.h5"))

    monkeypatch.setattr("idealseg.data.importers.ssl4mis.import_ssl4mis", full)
    src = write_ssl4mis(tmp_path / "src")
    code, line = run_cli(["prepare", "ssl4mis", src, tmp_path / "ds"], capsys)
    assert code == 2 and "No space left on device" in line and "x.h5" in line, line
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))


def test_evaluate_on_a_dataset_of_another_class_set_is_refused(trained, tmp_path, capsys):
    src = nifti_source(tmp_path / "scans")
    ds = tmp_path / "two_classes"
    assert run_cli(["prepare", "nifti", src, ds, "--val", "1"], capsys)[0] == 0
    code, line = run_cli(["evaluate", trained, "--dataset", ds, "--out", tmp_path / "ev"], capsys)
    assert code == 2 and "are not the run's" in line, line
    assert not (tmp_path / "ev").exists()


def test_a_read_only_run_folder_fails_before_training(phantom, tmp_path, capsys, monkeypatch):
    """A resume into a folder that cannot be written fails at once, not at its first checkpoint."""
    import idealseg.engine.trainer as trainer

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "run" / ".idealseg.json"))

    monkeypatch.setattr(trainer, "write_manifest", refuse)
    monkeypatch.setattr(trainer.Trainer, "fit", lambda self: pytest.fail("trained in a folder it cannot write"))
    code, line = run_cli(["finetune", phantom, "--out", tmp_path / "run", "--profile", "tiny", "--labeled", "2"],
                         capsys)
    assert code == 2 and line.endswith(".idealseg.json: Permission denied"), line


# --- cases found by the hostile review of this change -------------------------------------------

def test_run_overwrite_refuses_a_folder_without_the_manifest(phantom, tmp_path, capsys):
    mine = tmp_path / "u"
    (mine / "checkpoints").mkdir(parents=True)
    for name in ("checkpoints/model_epoch99.pt", "log.csv", "summary.json"):
        (mine / name).write_text("the user's")
    before = snapshot(mine)
    args = ["finetune", phantom, "--out", mine, "--profile", "tiny", "--labeled", "2"]
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, line = run_cli(args + extra, capsys)
        assert code == 2 and "--overwrite" not in line, line
    assert snapshot(mine) == before


def test_a_run_never_writes_into_its_inputs(phantom, tmp_path, capsys):
    pre = tmp_path / "pre"
    run_stage("pretrain", phantom, pre, **TINY)
    encoder = (pre / "encoder.pt").read_bytes()
    code, line = run_cli(["finetune", phantom, "--out", pre, "--init", pre, "--profile", "tiny", "--labeled", "2",
                          "--overwrite"], capsys)
    assert code == 2 and (pre / "encoder.pt").read_bytes() == encoder, line
    ds = tmp_path / "ds"
    shutil.copytree(phantom, ds)
    for out in (ds, ds / "run"):
        code, line = run_cli(["finetune", ds, "--out", out, "--profile", "tiny", "--labeled", "2", "--overwrite"],
                             capsys)
        assert code == 2 and ("is the input" in line or "lies inside the input" in line or "dataset" in line), line
    assert not (ds / "run").exists() and not (ds / "checkpoints").exists()


def test_evaluate_never_writes_over_the_users_files_or_the_run(trained, tmp_path, capsys):
    mine = tmp_path / "m"
    mine.mkdir()
    (mine / "summary.json").write_text("mine")
    code, line = run_cli(["evaluate", trained, "--out", mine], capsys)
    assert code == 2 and (mine / "summary.json").read_text() == "mine", line
    summary = (trained / "config.yaml").read_bytes()
    code, line = run_cli(["evaluate", trained, "--out", trained], capsys)
    assert code == 2 and "run folder" in line and (trained / "config.yaml").read_bytes() == summary, line
    assert run_cli(["evaluate", trained, "--out", tmp_path / "ev"], capsys)[0] == 0
    assert run_cli(["evaluate", trained, "--out", tmp_path / "ev"], capsys)[0] == 0  # its own: replaced


def test_predict_overwrite_never_replaces_a_mask_in_the_input_folder(trained, tmp_path, capsys):
    folder = tmp_path / "gt"
    write_nifti(folder / "p1.nii.gz", scan(1))
    manual = write_nifti(folder / "p1_seg.nii.gz", np.ones((8, 8, 3), np.uint8))
    before = manual.read_bytes()
    code, line = run_cli(["predict", trained, folder, folder, "--overwrite"], capsys)
    assert code == 2 and "never replaces a file there" in line and manual.read_bytes() == before, line


def test_predict_checks_every_scan_before_writing_any_mask(trained, tmp_path, capsys):
    folder = tmp_path / "scans"
    write_nifti(folder / "a.nii.gz", scan(1))
    (folder / "x_corrupt.nii.gz").write_bytes(b"not a nifti")
    code, line = run_cli(["predict", trained, folder, tmp_path / "out"], capsys)
    assert code == 2 and "x_corrupt.nii.gz" in line, line
    assert not (tmp_path / "out" / "a_seg.nii.gz").exists()


def test_overwrite_never_replaces_another_kind_of_idealseg_folder(trained, tmp_path, capsys):
    before = snapshot(trained)
    code, line = run_cli(["prepare", "phantom", trained, "--patients", "3", "--overwrite"], capsys)
    assert code == 2 and "is an idealseg run folder, not a dataset folder" in line, line
    code, line = run_cli(["demo", "--out", trained, "--overwrite", "--profile", "tiny"], capsys)
    assert code == 2 and snapshot(trained) == before, line


def test_overwrite_looks_below_the_top_level(tmp_path, capsys):
    ds = tmp_path / "ds"
    assert run_cli(["prepare", "phantom", ds, "--patients", "3"], capsys)[0] == 0
    (ds / "cases" / "my_notes.txt").write_text("keep")
    code, line = run_cli(["prepare", "phantom", ds, "--patients", "3", "--overwrite"], capsys)
    assert code == 2 and "cases/my_notes.txt" in line and (ds / "cases" / "my_notes.txt").exists(), line
    link = tmp_path / "link"
    (ds / "cases" / "my_notes.txt").unlink()
    link.symlink_to(ds)
    code, line = run_cli(["prepare", "phantom", link, "--patients", "3", "--overwrite"], capsys)
    assert code == 2 and "symbolic link" in line and link.is_symlink(), line


def test_run_overwrite_clears_the_old_runs_evaluations(phantom, tmp_path, capsys):
    run = tmp_path / "run"
    run_stage("finetune", phantom, run, method="supervised", labeled="2", **TINY)
    assert run_cli(["evaluate", run], capsys)[0] == 0 and (run / "eval_val" / "summary.json").exists()
    run_stage("finetune", phantom, run, method="ideal", labeled="2", overwrite=True, **TINY)
    assert not (run / "eval_val").exists()


def test_train_refuses_before_touching_its_pretraining(phantom, tmp_path, capsys):
    out = tmp_path / "tr"
    args = ["train", phantom, "--out", out, "--profile", "tiny", "--labeled", "2", "--iterations", "2"]
    assert run_cli(args, capsys)[0] == 0
    before = snapshot(out / "pretrain")
    code, line = run_cli([*args, "--method", "supervised", "--resume"], capsys)
    assert code == 2 and "but this run was started with method='bcp'" in line, line
    assert snapshot(out / "pretrain") == before


def test_resume_without_method_continues_the_folders_method(phantom, tmp_path, capsys):
    """A run started with another method than today's default (as `ideal` was before `bcp`) resumes
    with its own when the command names none; a method named on the command line is still checked."""
    import yaml

    out = tmp_path / "tr"
    args = ["train", phantom, "--out", out, "--profile", "tiny", "--labeled", "2"]
    assert run_cli([*args, "--method", "ideal", "--iterations", "2"], capsys)[0] == 0
    assert run_cli([*args, "--iterations", "4", "--resume"], capsys)[0] == 0
    config = yaml.safe_load((out / "finetune" / "config.yaml").read_text())
    assert config["method"] == "ideal" and config["iterations"] == 4
    assert run_cli(["finetune", phantom, "--out", out / "finetune", "--profile", "tiny", "--labeled", "2",
                    "--init", out / "pretrain", "--iterations", "6", "--resume"], capsys)[0] == 0
    assert yaml.safe_load((out / "finetune" / "config.yaml").read_text())["iterations"] == 6
    recorded = out / "finetune" / "config.yaml"  # a method idealseg does not know: refused naming the folder
    recorded.write_text(recorded.read_text().replace("method: ideal", "method: nosuch"))
    code, line = run_cli([*args, "--iterations", "8", "--resume"], capsys)
    assert code == 2 and str(out / "finetune") in line and "method" in line, line


def test_resume_continues_as_recorded_after_a_default_changed(phantom, tmp_path, capsys, monkeypatch):
    """The cpu profile's optimiser moved from SGD to Adam: a run started before resumes with what it
    recorded (profile, labels, optimiser, learning rate, init) where the command names nothing; an
    option named anew wins, and one that defines the experiment is still checked."""
    import yaml

    from idealseg.config import PROFILES

    run = tmp_path / "ft"
    assert run_cli(["finetune", phantom, "--out", run, "--profile", "tiny", "--labeled", "2", "--method",
                    "supervised", "--iterations", "2", "--lr", "0.02"], capsys)[0] == 0
    monkeypatch.setitem(PROFILES["tiny"], "finetune", {**PROFILES["tiny"]["finetune"], "optimizer": "adam",
                                                       "lr": 0.001, "labeled": "3"})
    assert run_cli(["finetune", phantom, "--out", run, "--iterations", "4", "--resume"], capsys)[0] == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["profile"], config["labeled"], config["optimizer"], config["lr"], config["iterations"]) == (
        "tiny", "2", "sgd", 0.02, 4)
    assert run_cli(["finetune", phantom, "--out", run, "--iterations", "5", "--lr", "0.005", "--resume"],
                   capsys)[0] == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.005
    code, line = run_cli(["finetune", phantom, "--out", run, "--iterations", "6", "--optimizer", "adam",
                          "--resume"], capsys)
    assert code == 2 and "optimizer='adam'" in line and "optimizer='sgd'" in line, line


def test_train_resumed_before_its_fine_tuning_keeps_the_pretrainings_profile(phantom, tmp_path, capsys):
    """Killed after pre-training, before fine-tuning recorded anything: the resumed fine-tuning runs
    under the profile (and network) its pre-training ran with, not the cpu profile's. A profile named
    anew on a resumed run is reported by what differs, not by the method it also dropped."""
    import shutil

    import yaml

    out = tmp_path / "tr"
    args = ["train", phantom, "--out", out, "--labeled", "2", "--iterations", "2"]
    assert run_cli([*args, "--profile", "tiny", "--method", "ideal"], capsys)[0] == 0
    shutil.rmtree(out / "finetune")
    assert run_cli([*args, "--method", "ideal", "--resume"], capsys)[0] == 0
    config = yaml.safe_load((out / "finetune" / "config.yaml").read_text())
    assert config["profile"] == "tiny" and config["channels"] == [8, 16, 32, 64, 128], config
    code, line = run_cli(["finetune", phantom, "--out", out / "finetune", "--labeled", "2", "--profile", "demo",
                          "--resume"], capsys)
    assert code == 2 and "method" not in line and "channels" in line, line


def test_resume_into_a_users_folder_with_a_config_yaml_says_whose_it_is(phantom, tmp_path, capsys):
    """Looking for the folder's method must not read a config.yaml idealseg did not write (a folder with a
    config.yaml and anything a run does not write is the user's; one with a config.yaml alone may be a
    run written before manifests, and its config.yaml is checked as one)."""
    mine = tmp_path / "myproj"
    mine.mkdir()
    (mine / "config.yaml").write_text("services:\n  web: {image: nginx}\n")
    (mine / "notes.txt").write_text("mine\n")
    code, line = run_cli(["finetune", phantom, "--out", mine, "--profile", "tiny", "--labeled", "2", "--resume"],
                         capsys)
    assert code == 2 and "services" not in line and "idealseg" in line, line
    assert (mine / "config.yaml").read_text() == "services:\n  web: {image: nginx}\n"


@pytest.mark.parametrize("files, expected", [
    (("imagesTr/p1.nii", "imagesTr/p1_0000.nii.gz"), "two files for case 'p1'"),
    (("imagesTr/p0_0001.nii.gz",), "channel file(s) _0001"),
])
def test_nifti_case_ids_must_be_unambiguous(files, expected, tmp_path, capsys):
    for name in files:
        write_nifti(tmp_path / "src" / name, np.random.default_rng(0).random((8, 8, 3)).astype(np.float32))
    code, line = run_cli(["prepare", "nifti", tmp_path / "src", tmp_path / "out"], capsys)
    assert code == 2 and expected in line, line


def test_prepare_refuses_a_dataset_the_disk_cannot_hold(tmp_path, capsys, monkeypatch):
    """A full disk mid-write can crash HDF5 itself (a segfault no handler catches): check first."""
    import shutil as sh
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda path: usage(10**9, 10**9 - 2**20, 2**20))  # 1 MiB free
    code, line = run_cli(["prepare", "phantom", tmp_path / "ds", "--patients", "20"], capsys)
    assert code == 2 and "1 MiB free, the dataset needs about" in line, line
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))


# --- cases found by the code review of this change ----------------------------------------------

def test_yaml_method_is_not_overridden_by_the_flags_default(phantom, tmp_path):
    (tmp_path / "run.yaml").write_text("method: supervised\n")
    run = tmp_path / "run"
    assert main(["finetune", str(phantom), "--out", str(run), "--config", str(tmp_path / "run.yaml"),
                 "--profile", "tiny", "--labeled", "2", "--iterations", "2"]) == 0
    assert "method: supervised" in (run / "config.yaml").read_text()


def test_resuming_a_finished_run_and_another_optimizer(phantom, tmp_path, capsys):
    args = ["finetune", phantom, "--out", tmp_path / "run", "--profile", "tiny", "--labeled", "2",
            "--iterations", "4", "--val-every", "2"]
    assert run_cli(args, capsys)[0] == 0
    assert run_cli([*args, "--resume"], capsys)[0] == 0  # finished: validates once more, no traceback
    code, line = run_cli([*args, "--resume", "--optimizer", "adam"], capsys)
    assert code == 2 and "optimizer" in line, line


def test_a_run_folder_from_before_compile_auto_was_dropped_still_reads():
    """`compile: auto` was the default for a day (the first GPU lease's run folders say it): such a
    config.yaml reads as `off`, the default it became, instead of an error on evaluate or resume."""
    from pathlib import Path

    from idealseg.config import RunConfig

    recorded = Path(__file__).parents[2] / "benchmarks/results/acdc_gpu_protocol/lease1/pretrain/ideal-pretrain_seed0"
    assert "compile: auto" in (recorded / "config.yaml").read_text()
    assert RunConfig.load(recorded / "config.yaml").compile == "off"



def test_predict_overwrite_replaces_its_own_masks_only(trained, tmp_path, capsys):
    """--overwrite replaces a mask predict wrote (its header says so), never a manual or another tool's."""
    folder, out = tmp_path / "scans", tmp_path / "masks"
    write_nifti(folder / "p1.nii.gz", scan(1))
    assert main(["predict", str(trained), str(folder), str(out)]) == 0
    assert main(["predict", str(trained), str(folder), str(out), "--overwrite"]) == 0  # ours: replaced
    manual = write_nifti(out / "p1_seg.nii.gz", np.ones((8, 8, 3), np.uint8))
    before = manual.read_bytes()
    code, line = run_cli(["predict", trained, folder, out, "--overwrite"], capsys)
    assert code == 2 and "is not a mask idealseg wrote" in line, line
    assert manual.read_bytes() == before
