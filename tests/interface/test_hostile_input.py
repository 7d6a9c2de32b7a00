"""Bad input: a one-line error naming the file and the problem, exit code 2, no partial output."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from idealseg.cli import main

from ..conftest import restore_ctrl_c, write_acdc_release, write_nifti, write_ssl4mis


def _corrupt_h5(src: Path) -> str:
    victim = sorted((src / "data").glob("*_slice_*.h5"))[0]
    victim.write_bytes(b"not an hdf5 file at all")
    return victim.name


def _missing_key(src: Path) -> str:
    victim = sorted((src / "data").glob("*_slice_*.h5"))[0]
    with h5py.File(victim, "w") as f:
        f["img"] = np.zeros((16, 16), np.float32)
    return "missing key(s) ['image', 'label']"


def _label_outside(src: Path) -> str:
    victim = sorted((src / "data").glob("*_slice_*.h5"))[0]
    with h5py.File(victim, "a") as f:
        label = f["label"][...]
        label[0, 0] = 7
        del f["label"]
        f["label"] = label
    return "label values [7] outside the class set 0..3"


def _nan_image(src: Path) -> str:
    victim = sorted((src / "data").glob("patient*_frame??.h5"))[0]  # a val volume
    with h5py.File(victim, "a") as f:
        image = f["image"][...]
        image[0, 0, 0] = np.nan
        del f["image"]
        f["image"] = image
    return "NaN or Inf"


def _shape_mismatch(src: Path) -> str:
    victim = sorted((src / "data").glob("patient*_frame??.h5"))[0]
    with h5py.File(victim, "a") as f:
        del f["label"]
        f["label"] = np.zeros((2, 16, 16), np.uint8)
    return "image/label shape mismatch"


def _empty_volume(src: Path) -> str:
    victim = sorted((src / "data").glob("patient*_frame??.h5"))[0]
    with h5py.File(victim, "w") as f:
        f["image"] = np.zeros((0, 16, 16), np.float32)
        f["label"] = np.zeros((0, 16, 16), np.uint8)
    return "empty volume"


def _duplicate_ids(src: Path) -> str:
    val = (src / "val.list").read_text().split()
    (src / "val.list").write_text("\n".join(val + val[:1]) + "\n")
    return f"duplicate case id '{val[0]}'"


def _two_d_volume(src: Path) -> str:
    victim = sorted((src / "data").glob("patient*_frame??.h5"))[0]
    with h5py.File(victim, "w") as f:
        f["image"] = np.zeros((16, 16), np.float32)
        f["label"] = np.zeros((16, 16), np.uint8)
    return "image must be 3D [Z, H, W] (or [C, Z, H, W] for C > 1 channels), got shape (16, 16)"


def _missing_listed(src: Path) -> str:
    (src / "val.list").write_text("patient099_frame01\n")
    return "patient099_frame01.h5: listed but missing"


def _ssl4mis(breaker):
    """A prepare-ssl4mis case: build a valid source, break it, expect the breaker's message."""

    def build(tmp: Path):
        src = write_ssl4mis(tmp / "src")
        return ["prepare", "ssl4mis", src, tmp / "out"], breaker(src), tmp / "out"

    return build


def _nifti_case(image=None, label=None, name="a.nii.gz", extra=(), patch=None):
    def build(tmp: Path):
        src = tmp / "nii"
        if image is not None:
            path = write_nifti(src / "imagesTr" / name, image)
            if patch:
                patch(path)
        if label is not None:
            write_nifti(src / "labelsTr" / name, label)
        return ["prepare", "nifti", src, tmp / "out", *extra], None, tmp / "out"

    return build


def _patch_bytes(offset, fmt, value):
    def patch(path: Path):
        raw = bytearray(path.read_bytes())
        raw[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
        path.write_bytes(bytes(raw))

    return patch


def _truncated_gzip(tmp: Path):
    src = write_acdc_release(tmp / "src", 1)
    victim = src / "patient001" / "patient001_frame01.nii.gz"
    victim.write_bytes(victim.read_bytes()[:60])
    return ["prepare", "acdc", src, tmp / "out"], "patient001_frame01.nii.gz: unreadable NIfTI", tmp / "out"


def _symlink_loop(tmp: Path):
    src = tmp / "nii" / "imagesTr"
    src.mkdir(parents=True)
    (src / "loop.nii.gz").symlink_to(src / "loop.nii.gz")
    return ["prepare", "nifti", src.parent, tmp / "out"], "loop.nii.gz: broken or looping symbolic link", tmp / "out"


def _huge_slice(tmp: Path):
    path = write_nifti(tmp / "nii" / "imagesTr" / "big.nii.gz", np.zeros((10000, 10000, 1), np.uint8))
    return ["prepare", "nifti", path.parent.parent, tmp / "out"], "big.nii.gz: image of shape (10000, 10000, 1)", \
        tmp / "out"


def _escaping_case_id(tmp: Path):
    ds = tmp / "ds"
    (ds / "cases").mkdir(parents=True)
    case = {"id": "../../etc/passwd", "patient": "p", "split": "train", "labeled": True, "shape": [1, 2, 2]}
    (ds / "dataset.json").write_text(json.dumps({"classes": ["bg", "fg"], "splits": {}, "cases": [case]}))
    return ["info", ds], "case id '../../etc/passwd' is not a plain file name", None


def _not_a_dataset(tmp: Path):
    return ["finetune", tmp, "--out", tmp / "run", "--profile", "tiny"], "not a dataset folder", tmp / "run"


def _bad_yaml(tmp: Path):
    cfg = tmp / "run.yaml"
    cfg.write_text("lr: [unclosed\n")
    return ["finetune", tmp, "--out", tmp / "run", "--config", cfg], "run.yaml: unreadable YAML", tmp / "run"


def _unknown_yaml_key(tmp: Path):
    cfg = tmp / "run.yaml"
    cfg.write_text("learning_rate: 0.1\n")
    return ["finetune", tmp, "--out", tmp / "run", "--config", cfg], "unknown option 'learning_rate'", tmp / "run"


def _bad_option(command: str, text: str, expected: str):
    """A run.yaml whose option is the wrong type, out of range or inconsistent: refused before any run folder."""
    def case(tmp: Path):
        cfg = tmp / "run.yaml"
        cfg.write_text(text + "\n")
        return [command, tmp, "--out", tmp / "run", "--config", cfg], expected, tmp / "run"
    return case


def _unknown_method(tmp: Path):
    return ["finetune", tmp, "--out", tmp / "run", "--method", "unet++"], "unknown method 'unet++'", tmp / "run"


def _pretrain_method_for_finetune(tmp: Path):
    return ["finetune", tmp, "--out", tmp / "run", "--method", "ideal-pretrain"], "is a pretrain method", tmp / "run"


def _evaluate_not_a_run(tmp: Path):
    return ["evaluate", tmp], "not a run folder (no config.yaml)", tmp / "eval_val"


def _corrupt_checkpoint(tmp: Path):
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("stage: finetune\nmethod: supervised\nnum_classes: 2\nnormalization: percentile\n")
    (run / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04garbage")
    return ["evaluate", run], "last.pt: corrupt or truncated checkpoint", run / "eval_val"


def _predict_text_file(tmp: Path):
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("stage: finetune\nmethod: supervised\nnum_classes: 2\nnormalization: percentile\n")
    import torch

    from idealseg.config import RunConfig
    from idealseg.methods import get_method

    cfg = RunConfig(method="supervised", num_classes=2, channels=(4, 8, 8, 8, 8))
    cfg.save(run / "config.yaml")
    torch.save({"model": get_method("supervised")(cfg).state_dict()}, run / "checkpoints" / "last.pt")
    bad = tmp / "notes.nii.gz"
    bad.write_text("this is not an image")
    return ["predict", run, bad, tmp / "out"], "notes.nii.gz: unreadable NIfTI", tmp / "out"


def _predict_missing(tmp: Path):
    return ["predict", tmp, tmp / "missing.nii.gz", tmp / "out"], "not a run folder", tmp / "out"


RNG = np.random.default_rng(0)
IMG = RNG.random((8, 8, 3)).astype(np.float32)


def _channel_gap(tmp: Path):
    src = tmp / "nii"
    for channel in ("0000", "0002"):
        write_nifti(src / "imagesTr" / f"case_{channel}.nii.gz", IMG)
    write_nifti(src / "labelsTr" / "case.nii.gz", np.zeros((8, 8, 3), np.uint8))
    return ["prepare", "nifti", src, tmp / "out"], "case 'case' has channel file(s) _0000, _0002 but no _0001", \
        tmp / "out"


def _shifted_label(tmp: Path):
    src = tmp / "nii"
    write_nifti(src / "imagesTr" / "a.nii.gz", IMG)
    moved = np.diag([1.5, 1.5, 8.0, 1.0])
    moved[:3, 3] = [30.0, -20.0, 5.0]
    write_nifti(src / "labelsTr" / "a.nii.gz", np.zeros((8, 8, 3), np.uint8), affine=moved)
    return ["prepare", "nifti", src, tmp / "out"], "a.nii.gz: label geometry differs from its image", tmp / "out"


def _rgb_image(tmp: Path):
    rgb = np.zeros((8, 8, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp / "nii" / "imagesTr" / "a.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(path))
    return ["prepare", "nifti", tmp / "nii", tmp / "out"], "a.nii.gz: an RGB (colour) image", tmp / "out"


def _acdc_height_unknown(tmp: Path):
    src = write_acdc_release(tmp / "src", 1)
    cfg = src / "patient001" / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("Height: ", "Height: unknown #"))
    return ["prepare", "acdc", src, tmp / "out"], None, None  # succeeds: an optional field, recorded as unknown


def _hand_edited_dataset(text: str, expected: str):
    def build(tmp: Path):
        ds = tmp / "ds"
        ds.mkdir()
        (ds / "dataset.json").write_text(text)
        return ["info", ds], expected, None
    return build


def _run_with(*args, expected: str):
    """A finetune command on a prepared phantom whose options are bad: refused before the run folder exists."""
    def build(tmp: Path):
        from idealseg.data.prepare import prepare

        ds = prepare("phantom", out=tmp / "ds", patients=3, seed=0)
        return ["finetune", ds, "--out", tmp / "run", "--profile", "tiny", *args], expected, tmp / "run"
    return build

CASES = {
    "ssl4mis: corrupt h5": _ssl4mis(lambda src: (_corrupt_h5(src), "unreadable or corrupt HDF5")[1]),
    "ssl4mis: wrong h5 keys": _ssl4mis(_missing_key),
    "ssl4mis: label outside class set": _ssl4mis(_label_outside),
    "ssl4mis: NaN in image": _ssl4mis(_nan_image),
    "ssl4mis: image/label shape mismatch": _ssl4mis(_shape_mismatch),
    "ssl4mis: empty volume": _ssl4mis(_empty_volume),
    "ssl4mis: duplicate case ids": _ssl4mis(_duplicate_ids),
    "ssl4mis: list names a missing file": _ssl4mis(_missing_listed),
    "ssl4mis: 2D where 3D is expected": _ssl4mis(_two_d_volume),
    "acdc: truncated gzip": _truncated_gzip,
    "nifti: fractional labels": _nifti_case(IMG, np.full((8, 8, 3), 0.5, np.float32)),
    "nifti: code outside the label map": _nifti_case(IMG, np.full((8, 8, 3), 999, np.int16),
                                                     extra=("--label-map", "205:1")),
    "nifti: zero spacing": _nifti_case(IMG, name="a.nii", patch=_patch_bytes(84, "<f", 0.0)),
    "nifti: negative spacing": _nifti_case(IMG, name="a.nii", patch=_patch_bytes(84, "<f", -1.5)),
    "nifti: non-finite affine": _nifti_case(IMG, name="a.nii", patch=_patch_bytes(280, "<f", float("nan"))),
    "nifti: no finite voxel": _nifti_case(np.full((8, 8, 3), np.nan, np.float32)),
    "nifti: 4D image": _nifti_case(RNG.random((8, 8, 3, 2)).astype(np.float32)),
    "nifti: image/label shape mismatch": _nifti_case(IMG, np.zeros((8, 8, 2), np.uint8)),
    "nifti: symlink loop": _symlink_loop,
    "nifti: 10000 x 10000 slice": _huge_slice,
    "info: case id leaving the folder": _escaping_case_id,
    "train: not a dataset folder": _not_a_dataset,
    "train: unreadable YAML": _bad_yaml,
    "train: unknown YAML option": _unknown_yaml_key,
    "train: option of the wrong type": _bad_option("finetune", "lr: abc", "run.yaml: option 'lr' must be a number"),
    "train: negative iterations": _bad_option("finetune", "iterations: -5", "option 'iterations' must be >= 1"),
    "train: option outside its choices": _bad_option("finetune", "perturb1: blur",
                                                     "option 'perturb1' must be one of dropout, noise, none"),
    "train: input size the U-Net cannot halve": _bad_option("finetune", "input_size: 100", "a multiple of 16"),
    "train: dense head level outside the encoder": _bad_option("pretrain", "dense_level: 9",
                                                               "run.yaml: option dense_level=9 names no encoder level"),
    "train: no unlabelled slices to pre-train on": _bad_option("pretrain", "batch_unlabeled: 0",
                                                               "run.yaml: option batch_unlabeled=0: pretrain needs"),
    "train: unknown method": _unknown_method,
    "train: pre-training method for fine-tuning": _pretrain_method_for_finetune,
    "evaluate: not a run folder": _evaluate_not_a_run,
    "evaluate: corrupt checkpoint": _corrupt_checkpoint,
    "predict: not a NIfTI file": _predict_text_file,
    "predict: not a run folder": _predict_missing,
    "nifti: binary mask saved as 0/255": _nifti_case(IMG, np.where(IMG > 0.5, 255, 0).astype(np.uint8)),
    "nifti: a gap in the channel files": _channel_gap,
    "nifti: label on another grid than its image": _shifted_label,
    "nifti: RGB image": _rgb_image,
    "nifti: label map names one code twice": _nifti_case(IMG, np.zeros((8, 8, 3), np.uint8),
                                                         extra=("--label-map", "500:3,500:0")),
    "nifti: label map class above 255": _nifti_case(IMG, np.zeros((8, 8, 3), np.uint8),
                                                    extra=("--label-map", "205:1,500:300")),
    "nifti: --val file missing": _nifti_case(IMG, np.zeros((8, 8, 3), np.uint8), extra=("--val", "@missing.txt")),
    "acdc: Height unknown in Info.cfg": _acdc_height_unknown,
    "nifti: --val not a percentage": _nifti_case(IMG, np.zeros((8, 8, 3), np.uint8), extra=("--val", "abc%")),
    "info: dataset.json is a list": _hand_edited_dataset("[1, 2]", "dataset.json must hold a mapping"),
    "info: dataset.json case entry malformed": _hand_edited_dataset(
        json.dumps({"classes": ["bg", "fg"], "splits": {}, "cases": [{"id": "a", "colour": "red"}]}),
        "dataset.json has a malformed case entry"),
    "info: dataset.json classes not a list": _hand_edited_dataset(
        json.dumps({"classes": "bg", "splits": {}, "cases": []}), "'classes' must list at least two class names"),
    "train: --labeled inf%": _run_with("--labeled", "inf%", expected="a percentage above 0 up to 100"),
    "train: --labeled @missing file": _run_with("--labeled", "@nowhere.txt", expected="label budget file not found"),
    "train: --labeled 0%": _run_with("--labeled", "0%", expected="a percentage above 0 up to 100"),
    "train: --init of a folder with no encoder": _run_with("--labeled", "1", "--init", "/nonexistent-run",
                                                          expected="encoder.pt: checkpoint not found"),
    "train: input size 16 (a 1x1 deepest map)": _bad_option("finetune", "input_size: 16", "from 32 up"),
    "train: an option neither stage reads": lambda tmp: (
        ["train", tmp, "--out", tmp / "run", "--perturb1", "noise"],
        "option(s) perturb1 are read by neither ideal-pretrain nor bcp", tmp / "run"),
    "train: copy-paste with weak-to-strong": _bad_option("finetune", "mixing: copy-paste\nweak_to_strong: true",
                                                         "cannot be combined yet"),
    "train: unknown sup_loss": _bad_option("finetune", "sup_loss: focal", "option 'sup_loss' must be one of"),
    "train: mixing outside its choices": _bad_option("finetune", "mixing: mixup", "option 'mixing' must be one of"),
    "train: confidence above 1": _bad_option("finetune", "confidence: 1.5",
                                             "option 'confidence' must be a probability"),
}

EXPECTED = {  # messages of the generic NIfTI cases, which name the file themselves
    "nifti: binary mask saved as 0/255": "a.nii.gz: label values [255] are not class numbers 0..31; map them to "
                                         "classes, e.g. --label-map=255:1",
    "nifti: label map names one code twice": "--label-map maps 500 twice (500:3 and 500:0)",
    "nifti: label map class above 255": "--label-map entry '500:300': the class number must be 0 to 31",
    "nifti: --val file missing": "missing.txt: cannot read this split file",
    "nifti: --val not a percentage": "split 'abc%': a percentage must be a number from 0 to 100",
    "nifti: fractional labels": "a.nii.gz: label has fractional values",
    "nifti: code outside the label map": "a.nii.gz: label values [999] are not in the label map",
    "nifti: zero spacing": "a.nii: invalid voxel spacing",
    "nifti: negative spacing": "a.nii: invalid voxel spacing",
    "nifti: non-finite affine": "a.nii: affine contains NaN or Inf",
    "nifti: no finite voxel": "a.nii.gz: every one of its 192 voxels is NaN or Inf",
    "nifti: 4D image": "a.nii.gz: expected a 2D or 3D image, got 4D",
    "nifti: image/label shape mismatch": "a.nii.gz: image/label shape mismatch",
}


def run_cli(args: list, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, (err[-1] if err else "")


@pytest.mark.parametrize("name", CASES)
def test_hostile_input(name, tmp_path, capsys):
    argv, expected, output = CASES[name](tmp_path)
    if expected is None and name not in EXPECTED:  # input the tool must accept, not refuse
        code, line = run_cli(argv, capsys)
        assert code == 0, line
        return
    expected = expected or EXPECTED[name]
    code, line = run_cli(argv, capsys)
    assert code == 2, line
    assert line.startswith(f"idealseg {argv[0]}: error: ") and expected in line, line
    if output is not None:
        assert not output.exists(), "partial output left behind"
        assert not list(output.parent.glob(f".{output.name}.*")), "temporary output left behind"


def test_output_exists_needs_overwrite(tmp_path, capsys):
    src = write_ssl4mis(tmp_path / "src")
    out = tmp_path / "out"
    assert run_cli(["prepare", "ssl4mis", src, out], capsys)[0] == 0
    code, line = run_cli(["prepare", "ssl4mis", src, out], capsys)
    assert code == 2 and "output folder exists" in line and "--overwrite" in line
    assert run_cli(["prepare", "ssl4mis", src, out, "--overwrite"], capsys)[0] == 0


def test_budget_larger_than_dataset(tmp_path, capsys):
    src = write_ssl4mis(tmp_path / "src")
    assert run_cli(["prepare", "ssl4mis", src, tmp_path / "ds"], capsys)[0] == 0
    code, line = run_cli(["info", tmp_path / "ds", "--labeled", "50"], capsys)
    assert code == 2 and "asks for 50 patients but the train split has 3" in line


# --- prepare and predict never crash: interrupts, full disks, images alone, coded masks ----------


def test_non_finite_voxels_are_set_to_the_minimum_with_one_warning(tmp_path, capsys):
    image = IMG.copy()
    image[0, :2, :] = np.nan
    image[1, 0, 0] = np.inf
    write_nifti(tmp_path / "nii" / "imagesTr" / "a.nii.gz", image)
    write_nifti(tmp_path / "nii" / "labelsTr" / "a.nii.gz", (IMG > 0.5).astype(np.uint8))
    with pytest.warns(UserWarning, match=r"a.nii.gz: 7 of 192 voxels are NaN or Inf; set to the image's minimum"):
        code, _ = run_cli(["prepare", "nifti", tmp_path / "nii", tmp_path / "ds"], capsys)
    assert code == 0
    from idealseg.data.dataset import Dataset

    stored = Dataset(tmp_path / "ds").load("a").image
    assert np.isfinite(stored).all() and stored.max() > 0  # not a silent empty volume


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5])
def test_ctrl_c_during_prepare_is_one_line_exit_130_and_leaves_nothing(delay, tmp_path):
    """A KeyboardInterrupt raised inside h5py's weakref callbacks was printed and ignored, and prepare
    went on to 'wrote' (7 of 10 tries): now it is held to the next case, every time."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "idealseg", "prepare", "phantom", str(out), "--patients", "30"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=restore_ctrl_c)
    while not list(tmp_path.glob(".ds.dir-*")):  # the import has begun
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    time.sleep(delay)
    assert proc.poll() is None, "prepare ended before the interrupt: make it longer"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1].split("\r")[-1] == "interrupted", stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "wrote" not in stdout, stderr
    assert not out.exists() and not list(tmp_path.glob(".ds.*")), "partial output left behind"


def test_ctrl_c_inside_a_library_callback_is_not_swallowed(tmp_path, capsys, monkeypatch, ctrl_c_raises):
    """The cause, made deterministic: Ctrl-C arriving while a weakref callback runs (h5py runs them as
    it closes its objects) raised KeyboardInterrupt inside the callback, which Python prints and drops."""
    import os
    import signal
    import weakref

    from idealseg.data.dataset import DatasetWriter

    write = DatasetWriter._write

    def write_then_ctrl_c(self, case):
        write(self, case)
        victim = type("H5Object", (), {})()
        ref = weakref.ref(victim, lambda _: os.kill(os.getpid(), signal.SIGINT) or None)
        del victim
        assert ref() is None

    monkeypatch.setattr(DatasetWriter, "_write", write_then_ctrl_c)
    code, line = run_cli(["prepare", "phantom", tmp_path / "ds", "--patients", "3"], capsys)
    assert (code, line) == (130, "interrupted")
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))


def _nifti_source(root: Path, n: int = 2) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        write_nifti(root / "imagesTr" / f"c{i}.nii.gz", rng.random((32, 32, 4)).astype(np.float32))
        write_nifti(root / "labelsTr" / f"c{i}.nii.gz", (rng.random((32, 32, 4)) > 0.5).astype(np.uint8))
    return root


def test_free_space_estimate_follows_symbolic_links(tmp_path, capsys, monkeypatch):
    """Sources linked from elsewhere counted 0 bytes, so a disk too small was found by HDF5 mid-write."""
    import shutil
    from collections import namedtuple

    from idealseg.data.prepare import estimated_size

    real = _nifti_source(tmp_path / "real")
    links = tmp_path / "links"
    for sub in ("imagesTr", "labelsTr"):
        (links / sub).mkdir(parents=True)
        for f in (real / sub).iterdir():
            (links / sub / f.name).symlink_to(f)
    (tmp_path / "dirlink").symlink_to(real, target_is_directory=True)
    size = estimated_size(real, 0)
    assert size > 0 and estimated_size(links, 0) == size and estimated_size(tmp_path / "dirlink", 0) == size
    usage = namedtuple("usage", "total used free")
    free = 16 * 2**20 + 1.1 * size  # enough for nothing but the margin
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**10, 10**10 - free, int(free)))
    code, line = run_cli(["prepare", "nifti", links, tmp_path / "ds"], capsys)
    assert code == 2 and "MiB free, the dataset needs about" in line, line
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))


def test_a_failed_write_in_prepare_names_the_output_file(tmp_path, capsys, monkeypatch):
    import errno
    import os

    from idealseg.data.dataset import DatasetWriter

    def full(self, case):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(DatasetWriter, "_write", full)
    code, line = run_cli(["prepare", "nifti", _nifti_source(tmp_path / "src"), tmp_path / "ds"], capsys)
    assert code == 2, line
    assert f"error: {tmp_path / 'ds' / 'cases' / 'c0.h5'}: could not write (No space left on device)" in line, line
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))


def test_images_without_labels_are_a_dataset_to_pretrain_on(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_nifti(tmp_path / "src" / "imagesTr" / f"c{i}.nii.gz", rng.random((32, 32, 4)).astype(np.float32))
    ds = tmp_path / "ds"
    assert run_cli(["prepare", "nifti", tmp_path / "src", ds], capsys)[0] == 0
    capsys.readouterr()
    assert main(["info", str(ds)]) == 0
    assert "no case has a label" in capsys.readouterr().out
    args = ["--profile", "tiny", "--iterations", "2", "--threads", "1"]
    code, line = run_cli(["pretrain", ds, "--out", tmp_path / "pre", *args], capsys)
    assert code == 0, line
    code, line = run_cli(["finetune", ds, "--out", tmp_path / "fine", *args], capsys)
    assert code == 2 and line.startswith("idealseg finetune: error: ") and "no labelled" in line, line
    assert not (tmp_path / "fine").exists()


def _coded(root: Path, codes_per_file: list[list[int]]) -> Path:
    rng = np.random.default_rng(1)
    for i, codes in enumerate(codes_per_file):
        write_nifti(root / "imagesTr" / f"c{i}.nii.gz", rng.random((16, 16, 3)).astype(np.float32))
        label = np.resize(np.array(codes, np.int16), 16 * 16 * 3).reshape(16, 16, 3)  # every code present
        write_nifti(root / "labelsTr" / f"c{i}.nii.gz", label)
    return root


@pytest.mark.parametrize("codes, classes, expected", [
    ([[0, 255], [0, 255]], None, "255:1"),
    ([[0, 200, 500, 600], [0, 200, 500, 600, 820]], None, "200:1,500:2,600:3,820:4"),  # 820 only in the 2nd file
    ([[0, 600, 200], [0, 500]], "background,a,b,c", "200:1,500:2,600:3"),
    ([[0, 200, 500, 600], [0, 820]], "background,a,b", "200:1,500:2,600:0,820:0"),  # no class left: dropped, said
    ([[0, 1, 2], [0, 255]], None, "1:1,2:2,255:3"),
])
def test_the_suggested_label_map_works_when_pasted(codes, classes, expected, tmp_path, capsys):
    src = _coded(tmp_path / "src", codes)
    extra = ["--classes", classes] if classes else []
    code, line = run_cli(["prepare", "nifti", src, tmp_path / "ds", *extra], capsys)
    assert code == 2 and "--label-map=" in line, line
    suggestion = line.split("--label-map=", 1)[1].split()[0]
    assert suggestion == expected, line
    code, line = run_cli(["prepare", "nifti", src, tmp_path / "ds", *extra, "--label-map", suggestion], capsys)
    assert code == 0, line
    from idealseg.data.dataset import Dataset

    ds = Dataset(tmp_path / "ds")
    mapping = {int(a): int(b) for a, b in (item.split(":") for item in suggestion.split(","))}
    for i, file_codes in enumerate(codes):
        stored = np.unique(ds.load(f"c{i}").label).tolist()
        assert stored == sorted({mapping.get(c, 0) for c in file_codes}), (i, stored)


def test_a_partial_label_map_gets_a_complete_suggestion(tmp_path, capsys):
    src = _coded(tmp_path / "src", [[0, 205, 420], [0, 500]])
    code, line = run_cli(["prepare", "nifti", src, tmp_path / "ds", "--label-map", "205:1,420:2"], capsys)
    assert code == 2 and "label values [500] are not in the label map; e.g. --label-map=205:1,420:2,500:3" in line
    assert run_cli(["prepare", "nifti", src, tmp_path / "ds", "--label-map", "205:1,420:2,500:3"], capsys)[0] == 0


# --- every input checked once, where it enters: one line naming it, exit 2, nothing written ------


def _phantom(tmp: Path) -> Path:
    """3 phantom patients (1 train, 1 val, 1 test): enough for a command to get as far as its checks."""
    from idealseg.data.prepare import prepare

    return prepare("phantom", out=tmp / "ds", patients=3, seed=0)


def _on_phantom(command: str, *args, expected: str):
    """`command` on a fresh phantom with `args`: refused before its output folder exists."""
    def build(tmp: Path):
        out = tmp / "out"
        argv = [command, _phantom(tmp), *args] + (["--out", out] if command != "info" else [])
        return argv, expected, out if command != "info" else None
    return build


def _label_file(text: str, command: str = "finetune"):
    def build(tmp: Path):
        (tmp / "ids.txt").write_text(text)
        argv, expected, out = _on_phantom(command, "--labeled", f"@{tmp / 'ids.txt'}", "--profile", "tiny",
                                          expected="ids.txt: label budget file names no patient")(tmp)
        return [a for a in argv if command != "info" or a not in ("--profile", "tiny")], expected, out
    return build


def _benchmark(text: str, *args, expected: str, methods: str = "{name: sup, method: supervised}"):
    """A benchmark YAML of `methods` plus `text`, refused before its results folder exists."""
    def build(tmp: Path):
        cfg = tmp / "b.yaml"
        cfg.write_text(f"dataset: d\nlabeled: [7]\nmethods:\n  - {methods}\n" + text)
        return ["benchmark", cfg, "--out", tmp / "results", *args], expected, tmp / "results"
    return build


def _edited_dataset(edit, expected: str, command: str = "info"):
    """A phantom whose dataset.json was edited by hand (`edit` changes the parsed JSON in place)."""
    def build(tmp: Path):
        ds = _phantom(tmp)
        info = json.loads((ds / "dataset.json").read_text())
        edit(info)
        (ds / "dataset.json").write_text(json.dumps(info))
        if command == "info":
            return ["info", ds], expected, None
        return ["finetune", ds, "--out", tmp / "run", "--profile", "tiny", "--labeled", "1"], expected, tmp / "run"
    return build


def _case0(**values):
    return lambda info: info["cases"][0].update(values)


SEED_RANGE = "must be a whole number from 0 to 4294967295 (2**32-1, the seeds numpy accepts)"
FIRST = "dataset.json case 'phantom000_ED'"

EDGE_CASES = {
    # seeds: numpy takes 0 .. 2**32-1; a negative one was a ValueError traceback, a huge one torch's
    "info: --seed -1": _on_phantom("info", "--seed", "-1", expected=f"--seed -1: {SEED_RANGE}"),
    "prepare: --seed -1": lambda tmp: (["prepare", "phantom", tmp / "out", "--seed", "-1", "--patients", "3"],
                                       f"--seed -1: {SEED_RANGE}", tmp / "out"),
    "finetune: --seed -1": _on_phantom("finetune", "--labeled", "1", "--profile", "tiny", "--seed", "-1",
                                       expected="command line: option 'seed' must be from 0 to 4294967295"),
    "finetune: --seed above 2**63": _on_phantom("finetune", "--labeled", "1", "--profile", "tiny", "--seed",
                                                str(2**63 + 1), expected="option 'seed' must be from 0 to 4294967295"),
    "benchmark: --seeds -1": _benchmark("", "--seeds", "-1", expected=f"--seeds -1: {SEED_RANGE}"),
    "benchmark: --seeds a": _benchmark("", "--seeds", "0,a", expected="--seeds '0,a': 'a' is not a seed"),
    "benchmark: a YAML seed above 2**32-1": _benchmark("seeds: [4294967296]\n",
                                                       expected="seeds of 'sup' must be a list of integers"),
    # an @labels file naming nobody: a run without labels, or comments taken for patient ids
    "finetune: --labeled @empty file": _label_file(""),
    "finetune: --labeled @file of comments and blank lines": _label_file("# patients\n\n   \n# none yet\n"),
    "info: --labeled @empty file": _label_file("\n\n", command="info"),
    # benchmark budgets: .inf and .nan are YAML numbers, 0 s buys no step
    "benchmark: budget .inf": _benchmark("budget: {total_seconds: .inf}\n",
                                         expected="budget.total_seconds must be a number of seconds, finite and > 0, "
                                                  "got inf"),
    "benchmark: budget .nan": _benchmark("budget: {total_seconds: .nan}\n", expected="got nan"),
    "benchmark: budget 0": _benchmark("budget: {total_seconds: 0}\n", expected="finite and > 0, got 0"),
    "benchmark: pretraining budget .inf": _benchmark(
        "budget: {total_seconds: 100, pretrain_seconds: .inf}\n", methods="{name: i, method: ideal, pretrain: "
        "ideal-pretrain}", expected="budget.pretrain_seconds must be a number of seconds, finite and > 0, got inf"),
    "benchmark: labeled 0": _benchmark("labeled: [0]\n", expected="labeled: 0: at least 1 labelled patient"),
    "benchmark: split of the wrong name": _benchmark("split: validation\n", expected="split must be one of train, val"),
    "benchmark: profile as a list": _benchmark("profile: [cpu]\n", expected="b.yaml: unknown profile ['cpu']"),
    "benchmark: method as a list": _benchmark("", methods="{name: a, method: [bcp]}",
                                              expected="method 'a': unknown method ['bcp']"),
    # dataset.json edited by hand: one line naming the file, the case and the entry
    "info: dataset.json spacing as text": _edited_dataset(
        _case0(spacing=["1.5", 1.4, 1.4]), f"{FIRST}: 'spacing' must be three numbers > 0 (z, y, x in mm) or null"),
    "info: dataset.json spacing 0": _edited_dataset(_case0(spacing=[0, 1.4, 1.4]), f"{FIRST}: 'spacing' must be"),
    "finetune: dataset.json spacing negative": _edited_dataset(_case0(spacing=[6.0, -1.4, 1.4]),
                                                               f"{FIRST}: 'spacing' must be", command="finetune"),
    "info: dataset.json null in a shape": _edited_dataset(_case0(shape=[9, None, 144]),
                                                          f"{FIRST}: 'shape' must be three whole numbers"),
    "info: dataset.json labeled as text": _edited_dataset(_case0(labeled="yes"), f"{FIRST}: 'labeled' must be true"),
    "info: dataset.json case without a split": _edited_dataset(lambda info: info["cases"][0].pop("split"),
                                                               "malformed case entry: cases[0] ('phantom000_ED'): "
                                                               "no 'split'"),
    "info: dataset.json split of the wrong name": _edited_dataset(_case0(split="training"),
                                                                  f"{FIRST}: 'split' must be one of train, val, test"),
    "info: dataset.json case moved in one place only": _edited_dataset(
        _case0(split="val"), f"{FIRST}: 'split' is 'val' but 'splits' lists it under 'train'; make the two agree"),
    "info: dataset.json splits naming a case it lacks": _edited_dataset(
        lambda info: info["splits"]["test"].append("phantom009_ED"),
        "dataset.json 'splits' 'test' names case 'phantom009_ED', which 'cases' lacks"),
    "info: dataset.json normalization unknown": _edited_dataset(lambda info: info.update(normalization="zscore"),
                                                                "'normalization' must be one of percentile, minmax"),
    # --resume continues, --overwrite starts again: both at once silently resumed
    "finetune: --resume --overwrite": _on_phantom("finetune", "--labeled", "1", "--profile", "tiny", "--resume",
                                                  "--overwrite", expected="--resume and --overwrite: choose one"),
    "train: --resume --overwrite": _on_phantom("train", "--labeled", "1", "--profile", "tiny", "--resume",
                                               "--overwrite", expected="--resume and --overwrite: choose one"),
    "demo: --resume --overwrite": lambda tmp: (["demo", "--out", tmp / "demo", "--profile", "tiny", "--resume",
                                                "--overwrite"], "--resume and --overwrite: choose one", tmp / "demo"),
    # label budgets out of range: one line, and before any pre-training runs
    "finetune: --labeled 0": _on_phantom("finetune", "--labeled", "0", "--profile", "tiny",
                                         expected="--labeled 0: at least 1 labelled patient is needed"),
    "finetune: --labeled -1": _on_phantom("finetune", "--labeled", "-1", "--profile", "tiny",
                                          expected="--labeled -1: at least 1 labelled patient is needed"),
    "finetune: --labeled more than the patients": _on_phantom("finetune", "--labeled", "9", "--profile", "tiny",
                                                              expected="asks for 9 patients but the train split has 1"),
    "info: --labeled 0": _on_phantom("info", "--labeled", "0", expected="at least 1 labelled patient is needed"),
    "train: --labeled more than the patients, before pre-training": _on_phantom(
        "train", "--labeled", "2", "--profile", "tiny", expected="asks for 2 patients but the train split has 1"),
    "demo: --labeled more than the phantom's train split": lambda tmp: (
        ["demo", "--out", tmp / "demo", "--profile", "tiny", "--labeled", "7"],
        "--labeled 7: asks for 7 patients but the phantom's train split has 6", tmp / "demo"),
    "demo: --patients 2": lambda tmp: (["demo", "--out", tmp / "demo", "--profile", "tiny", "--patients", "2"],
                                       "--patients 2: must be a whole number >= 3", tmp / "demo"),
    # options: inf passed every range check
    "finetune: --lr inf": _on_phantom("finetune", "--labeled", "1", "--profile", "tiny", "--lr", "inf",
                                      expected="command line: option 'lr' must be a finite number, got inf"),
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_input_checked_at_the_edge(name, tmp_path, capsys):
    argv, expected, output = EDGE_CASES[name](tmp_path)
    code, line = run_cli(argv, capsys)
    assert code == 2, line
    assert line.startswith(f"idealseg {argv[0]}: error: ") and expected in line, line
    if output is not None:
        assert not output.exists(), "partial output left behind"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step supervised run on a 3-patient phantom: a real config.yaml and last.pt to edit."""
    tmp = tmp_path_factory.mktemp("edge")
    ds = _phantom(tmp)
    run = tmp / "run"
    assert main([str(a) for a in ["finetune", ds, "--out", run, "--method", "supervised", "--profile", "tiny",
                                  "--labeled", "1", "--iterations", "2", "--val-every", "0", "--threads", "1"]]) == 0
    return ds, run


def _edited_run(tiny_run, tmp: Path, text: str) -> Path:
    """A copy of the tiny run whose config.yaml has `text` in place of its own lines of those keys."""
    import shutil

    import yaml

    run = shutil.copytree(tiny_run[1], tmp / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(yaml.safe_load(text))
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def _uses(run: Path, ds: Path, tmp: Path) -> dict[str, list]:
    scan = write_nifti(tmp / "scan.nii.gz", IMG)
    return {"evaluate": ["evaluate", run], "predict": ["predict", run, scan, tmp / "masks"],
            "resume": ["finetune", ds, "--out", run, "--resume", "--iterations", "4"]}


@pytest.mark.parametrize("use", ["evaluate", "predict", "resume"])
@pytest.mark.parametrize("text, expected", [
    pytest.param("method: bcp", "config.yaml: method is 'bcp' but last.pt was trained with 'supervised'",
                 id="another method"),
    pytest.param("channels: [4, 8, 16, 32, 64]", "config.yaml: channels is [4, 8, 16, 32, 64] but last.pt was "
                 "trained with [8, 16, 32, 64, 128]", id="other channels"),
    pytest.param("method: unet", "config.yaml: unknown method 'unet'", id="unknown method"),
    pytest.param("lr: .inf", "config.yaml: option 'lr' must be a finite number, got inf", id="infinite lr"),
    pytest.param("1: 2", "config.yaml: unknown option '1'", id="a number as key"),
    pytest.param("seed: -3", "config.yaml: option 'seed' must be from 0 to 4294967295", id="negative seed"),
])
def test_a_hand_edited_config_yaml_is_one_line(text, expected, use, tiny_run, tmp_path, capsys):
    """Edited by hand, config.yaml builds another network than the checkpoint holds: torch's state-dict
    traceback before, now one line naming config.yaml and what differs."""
    run = _edited_run(tiny_run, tmp_path, text)
    argv = _uses(run, tiny_run[0], tmp_path)[use]
    code, line = run_cli(argv, capsys)
    assert code == 2 and line.startswith(f"idealseg {argv[0]}: error: ") and expected in line, line
    assert not (tmp_path / "masks").exists() and not (run / "eval_val").exists()


def test_weights_that_do_not_fit_their_config_name_it(tiny_run):
    """A checkpoint without its own record of the config (best.pt) is compared weight by weight."""
    import dataclasses

    import torch

    from idealseg.config import RunConfig
    from idealseg.errors import InputError
    from idealseg.methods import get_method
    from idealseg.runfolder.weights import load_weights

    run = tiny_run[1]
    cfg = RunConfig.load(run / "config.yaml")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    del state["config"]
    cfg = dataclasses.replace(cfg, channels=(4, 8, 16, 32, 64))  # RunConfig is frozen
    with pytest.raises(InputError, match=r"config.yaml: describes a network \(method supervised, channels "
                                         r"4,8,16,32,64, 4 classes\) that best.pt does not hold: weight '.+' is "
                                         r"\[8, 1, 3, 3\] in the checkpoint, \[4, 1, 3, 3\] in this network"):
        load_weights(get_method("supervised")(cfg), state, run / "checkpoints" / "best.pt", run / "config.yaml")
    with pytest.raises(InputError, match="best.pt: holds no model weights"):
        load_weights(get_method("supervised")(cfg), {"step": 3}, run / "checkpoints" / "best.pt", run / "config.yaml")


def test_python_api_errors_are_the_cli_lines(tiny_run, tmp_path, capsys):
    """The API raises IdealsegError with the CLI's words; where a Python value is natural (a dict label
    map, a list of class names) it is taken as the CLI's text would be."""
    import idealseg
    from idealseg.errors import IdealsegError

    code, line = run_cli(["prepare", "phantom", tmp_path / "cli", "--seed", "-1"], capsys)
    with pytest.raises(IdealsegError) as raised:
        idealseg.prepare("phantom", out=tmp_path / "api", seed=-1)
    assert code == 2 and line == f"idealseg prepare: error: {raised.value}"
    ds, run = tiny_run
    refused = [
        (lambda: idealseg.prepare("nifti", tmp_path, tmp_path / "x", label_map=600), "--label-map 600: give"),
        (lambda: idealseg.prepare("mri", tmp_path / "x"), "source 'mri': must be one of ssl4mis, acdc"),
        (lambda: idealseg.prepare("phantom", out=tmp_path / "x", patients="3"), "--patients '3': must be a whole"),
        (lambda: idealseg.prepare("phantom", out=5), "OUT 5: must be a file or folder path"),
        (lambda: idealseg.finetune(ds, tmp_path / "r", resume=True, overwrite=True), "choose one"),
        (lambda: idealseg.finetune(ds, tmp_path / "r", resume="yes"), "--resume 'yes': must be True or False"),
        (lambda: idealseg.finetune(ds, tmp_path / "r", profile=["cpu"]), "unknown profile ['cpu']"),
        (lambda: idealseg.train(ds, tmp_path / "r", skip_pretrain="no"), "--no-pretrain 'no': must be True"),
        (lambda: idealseg.evaluate(run, split="tset"), "--split 'tset': must be one of train, val, test"),
        (lambda: idealseg.load(run, checkpoint="Best"), "--checkpoint 'Best': must be one of last, best"),
        (lambda: idealseg.load(run, device="tpu"), "device 'tpu': "),
        (lambda: idealseg.load(run, device="cpu").segment(np.zeros((4, 4))), "expected a [Z, H, W] volume"),
        (lambda: idealseg.predict_files(run, tmp_path / "scan.nii.gz", tmp_path / "m", flip_tta="no"), "--tta 'no'"),
    ]
    for call, expected in refused:
        with pytest.raises(IdealsegError) as raised:
            call()
        assert expected in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert not (tmp_path / "x").exists() and not (tmp_path / "r").exists()


def test_python_api_takes_a_label_map_as_a_dict(tmp_path):
    import idealseg
    from idealseg.data.dataset import Dataset

    write_nifti(tmp_path / "src" / "imagesTr" / "a.nii.gz", IMG)
    write_nifti(tmp_path / "src" / "labelsTr" / "a.nii.gz", np.where(IMG > 0.5, 600, 0).astype(np.int16))
    ds = Dataset(idealseg.prepare("nifti", tmp_path / "src", tmp_path / "ds", label_map={600: 1},
                                  classes=["background", "scar"]))
    assert ds.classes == ["background", "scar"] and np.unique(ds.load("a").label).tolist() == [0, 1]


def test_a_hand_edited_calibration_is_one_line(tmp_path, capsys):
    """A benchmark's calibration.json with a cost typed as text failed as a division inside `iterations`."""
    cfg = tmp_path / "b.yaml"
    cfg.write_text("dataset: d\nlabeled: [7]\nbudget: {total_seconds: 60}\n"
                   "methods:\n  - {name: sup, method: supervised}\n")
    out = tmp_path / "results"
    assert run_cli(["benchmark", cfg, "--out", out, "--report-only"], capsys)[0] == 0
    (out / "calibration.json").write_text(json.dumps({"finetune_supervised": "0.5"}))
    code, line = run_cli(["benchmark", cfg, "--out", out], capsys)
    assert code == 2 and line.endswith("calibration.json: a calibration maps each stage to positive seconds per step")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8")
@pytest.mark.parametrize("command", ["finetune", "train", "prepare", "evaluate"])
def test_an_output_name_that_is_not_utf8_is_one_line_and_leaves_nothing(phantom, tmp_path, command, capsys):
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/out\xff")
    args = {"finetune": ["finetune", phantom, "--out", out, "--method", "supervised", "--labeled", "2"],
            "train": ["train", phantom, "--out", out, "--labeled", "2"],
            "prepare": ["prepare", "phantom", out, "--patients", "3"],
            "evaluate": ["evaluate", tmp_path / "no_run", "--out", out]}[command]
    tail = ["--profile", "tiny", "--iterations", "2"] if command in ("finetune", "train") else []
    capsys.readouterr()
    code = main([str(a) for a in [*args, *tail]])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "not UTF-8" in line, line
    assert list(tmp_path.iterdir()) == []


# --- damaged files a run or benchmark left, signals at any moment, one line under a progress bar --


@pytest.mark.parametrize("text", ['{"name": "sup", "metr', "[]", '{"name": "sup"}'])
def test_a_damaged_result_json_is_one_line_naming_it(text, tmp_path, capsys):
    """A cell's result.json cut short (a full disk, a copy) or edited: a JSONDecodeError or
    AttributeError traceback from report.collect before."""
    cfg = tmp_path / "b.yaml"
    cfg.write_text("dataset: d\nlabeled: [7]\nmethods:\n  - {name: sup, method: supervised}\n")
    out = tmp_path / "results"
    assert run_cli(["benchmark", cfg, "--out", out, "--report-only"], capsys)[0] == 0
    victim = out / "cells" / "sup_7_seed0" / "result.json"
    victim.parent.mkdir(parents=True)
    victim.write_text(text)
    code, line = run_cli(["benchmark", cfg, "--out", out, "--report-only"], capsys)
    assert code == 2 and line.startswith(f"idealseg benchmark: error: {victim}: damaged result.json: "), line
    assert line.endswith("; delete it to run the cell again"), line


@pytest.fixture(scope="module")
def run_with_previous(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step supervised run checkpointed at every step: last.pt (step 2) and last.prev.pt (step 1)."""
    tmp = tmp_path_factory.mktemp("prev")
    ds, run = _phantom(tmp), tmp / "run"
    assert main([str(a) for a in ["finetune", ds, "--out", run, "--method", "supervised", "--profile", "tiny",
                                  "--labeled", "1", "--iterations", "2", "--val-every", "0", "--threads", "1",
                                  "--checkpoint-every", "1"]]) == 0
    assert (run / "checkpoints" / "last.prev.pt").exists()
    return ds, run


def _tampered_copy(run_with_previous, tmp: Path, field: str, value, names: tuple[str, ...]) -> Path:
    import shutil

    import torch

    run = shutil.copytree(run_with_previous[1], tmp / "run")
    for name in names:
        state = torch.load(run / "checkpoints" / name, weights_only=False)
        state[field] = value
        torch.save(state, run / "checkpoints" / name)
    return run


@pytest.mark.parametrize("field, value", [("step", "x"), ("optimizer", None), ("rng", 5), ("sampler", 5),
                                          ("elapsed", "1 s")])
def test_a_tampered_checkpoint_is_one_line_naming_it(field, value, run_with_previous, tmp_path, capsys):
    """A checkpoint field of the wrong type: TypeError/AttributeError tracebacks from Trainer._restore
    before (or a step of 'x' failing later, in the loop)."""
    run = _tampered_copy(run_with_previous, tmp_path, field, value, ("last.pt", "last.prev.pt"))
    with pytest.warns(UserWarning, match="last.pt: damaged checkpoint: .*resuming from the previous checkpoint"):
        code, line = run_cli(["finetune", run_with_previous[0], "--out", run, "--resume", "--iterations", "3"],
                             capsys)
    assert code == 2 and line.startswith(f"idealseg finetune: error: {run}/checkpoints/last.prev.pt: damaged "
                                         "checkpoint: "), line


def test_a_tampered_last_checkpoint_falls_back_to_the_previous(run_with_previous, tmp_path, capsys):
    run = _tampered_copy(run_with_previous, tmp_path, "step", "x", ("last.pt",))
    with pytest.warns(UserWarning, match=r"last.pt: damaged checkpoint: step 'x' is not a whole number"):
        code, line = run_cli(["finetune", run_with_previous[0], "--out", run, "--resume", "--iterations", "3"],
                             capsys)
    assert code == 0, line
    assert json.loads((run / "summary.json").read_text())["steps"] == 3


def _main_or_fail(argv: list) -> int:
    """main(), failing the test (not ending the session) if a KeyboardInterrupt escapes it."""
    try:
        return main([str(a) for a in argv])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main()")


def test_ctrl_c_while_the_parser_is_built_is_one_line(tmp_path, capsys, monkeypatch):
    """Building the parser imports the config module (yaml, ...): a Ctrl-C then was a traceback."""
    import idealseg.cli

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(idealseg.cli, "build_parser", interrupted)
    capsys.readouterr()
    code = _main_or_fail(["info", tmp_path])
    assert (code, capsys.readouterr().err) == (130, "interrupted\n")


def test_ctrl_c_after_the_command_ended_is_one_line_exit_130(tmp_path):
    """A signal after 'wrote X' (main() has returned, the interpreter is shutting down) was a traceback."""
    import subprocess

    script = ("import os, signal, sys, time; from idealseg.cli import main; "
              f"sys.argv = ['idealseg', 'prepare', 'phantom', {str(tmp_path / 'ds')!r}, '--patients', '3']; "
              "code = main(); os.kill(os.getpid(), signal.SIGINT); time.sleep(5); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=restore_ctrl_c)
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n"), proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("wrote ")  # after the per-split summary lines


def test_sigterm_during_prepare_is_one_line_exit_143_and_leaves_nothing(tmp_path):
    """`kill` (SIGTERM) ended prepare at once, leaving its lock and a half-written .X.dir-*.tmp."""
    import signal
    import subprocess
    import time

    out = tmp_path / "X"
    cmd = [sys.executable, "-m", "idealseg", "prepare", "phantom", str(out), "--patients", "30"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    while not list(tmp_path.glob(".X.dir-*")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr == "interrupted\n" and "wrote" not in stdout, stderr
    assert not out.exists() and not list(tmp_path.glob(".X*")), list(tmp_path.iterdir())


@pytest.mark.parametrize("raised, expected", [
    ("error", (2, "idealseg info: error: training diverged at step 3")),
    ("ctrl-c", (130, "interrupted")),
])
def test_the_last_line_is_not_glued_to_a_progress_bar(raised, expected, tmp_path, capsys, monkeypatch):
    """The trainer's bar is left open when it raises: the error or "interrupted" was written after its
    last `\\r` redraw, on the same line."""
    from tqdm import tqdm

    import idealseg.cli
    from idealseg.errors import IdealsegError

    def training(args):
        bar = tqdm(total=300, desc="finetune bcp", file=sys.stderr, mininterval=0)
        bar.update(10)
        raise IdealsegError("training diverged at step 3") if raised == "error" else KeyboardInterrupt

    monkeypatch.setattr(idealseg.cli, "_cmd_info", training)
    capsys.readouterr()
    code = _main_or_fail(["info", tmp_path])
    lines = capsys.readouterr().err.split("\n")
    assert (code, lines[-2], lines[-1]) == (*expected, ""), lines


def test_a_newline_in_a_path_stays_on_the_error_line(tmp_path, capsys):
    capsys.readouterr()
    code = main(["info", str(tmp_path / "two\nlines")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "two\\nlines" in err, err
