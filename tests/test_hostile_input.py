"""Bad input: a one-line error naming the file and the problem, exit code 2, no partial output."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from idealseg.cli import main

from .conftest import write_acdc_release, write_nifti, write_ssl4mis


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
    return "image must be 3D [Z, H, W], got shape (16, 16)"


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
    (run / "config.yaml").write_text("stage: finetune\nmethod: supervised\nnum_classes: 2\n")
    (run / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04garbage")
    return ["evaluate", run], "last.pt: corrupt or truncated checkpoint", run / "eval_val"


def _predict_text_file(tmp: Path):
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("stage: finetune\nmethod: supervised\nnum_classes: 2\n")
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


def _two_channels(tmp: Path):
    src = tmp / "nii"
    for channel in ("0000", "0001"):
        write_nifti(src / "imagesTr" / f"case_{channel}.nii.gz", IMG)
    write_nifti(src / "labelsTr" / "case.nii.gz", np.zeros((8, 8, 3), np.uint8))
    return ["prepare", "nifti", src, tmp / "out"], "case 'case' has channel file(s) _0000, _0001", tmp / "out"


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

        ds = prepare("phantom", tmp / "ds", patients=3, seed=0)
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
    "nifti: Inf in image": _nifti_case(np.where(IMG > 0.5, np.inf, IMG).astype(np.float32)),
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
    "nifti: nnU-Net second channel": _two_channels,
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
                                         "classes, e.g. --label-map 255:1",
    "nifti: label map names one code twice": "--label-map maps 500 twice (500:3 and 500:0)",
    "nifti: label map class above 255": "--label-map entry '500:300': the class number must be 0 to 31",
    "nifti: --val file missing": "missing.txt: cannot read this split file",
    "nifti: --val not a percentage": "split 'abc%': a percentage must be a number from 0 to 100",
    "nifti: fractional labels": "a.nii.gz: label has fractional values",
    "nifti: code outside the label map": "a.nii.gz: label values [999] are not in the label map",
    "nifti: zero spacing": "a.nii: invalid voxel spacing",
    "nifti: negative spacing": "a.nii: invalid voxel spacing",
    "nifti: non-finite affine": "a.nii: affine contains NaN or Inf",
    "nifti: Inf in image": "a.nii.gz: image contains NaN or Inf",
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
