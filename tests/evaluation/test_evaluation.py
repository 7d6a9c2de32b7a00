"""Evaluate, predict (NIfTI round trip), report and demo on tiny runs (the benchmark: test_benchmark.py)."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from idealseg.cli import main
from idealseg.data.importers.phantom import phantom_raw
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.inference.predict import predict_files

from ..conftest import write_nifti


def test_train_writes_a_complete_run_folder(run):
    for part in ("pretrain", "finetune"):
        assert (run / part / "config.yaml").exists() and (run / part / "checkpoints" / "last.pt").exists()
    assert (run / "pretrain" / "encoder.pt").exists() and (run / "finetune" / "checkpoints" / "best.pt").exists()
    with open(run / "finetune" / "log.csv", newline="") as f:
        assert any(r.get("val_dice") for r in csv.DictReader(f))
    events = list((run / "finetune" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0  # tensorboard is a test extra: the event files must be there
    env = json.loads((run / "finetune" / "env.json").read_text())  # what it ran on, for every timing
    assert env["torch"] and env["cpu"] and env["device"] == "cpu" and env["idealseg"]
    assert isinstance(env["cpu_native_bf16"], bool) and env["command"]
    assert env["commit"] is None or len(env["commit"].split("+")[0]) == 40


def test_evaluate_writes_csv_summary_and_table(run):
    summary = evaluate_run(run, "test")
    out = run / "finetune" / "eval_test"
    rows = list(csv.DictReader(open(out / "per_volume.csv")))
    assert len(rows) == 2 * 3  # 2 test volumes x 3 foreground classes
    assert {"dice", "hd95", "asd", "status"} <= set(rows[0])
    assert summary["unit"] == "mm" and set(summary["classes"]) == {"RV", "Myo", "LV", "mean"}
    assert json.loads((out / "summary.json").read_text())["volumes"] == 2
    assert "| mean |" in (out / "table.md").read_text()
    assert "LV_ef_mae" in summary["ejection_fraction"]


def test_largest_component_keeps_one_region_per_class_across_slices():
    from idealseg.transforms.components import largest_components

    mask = np.zeros((3, 12, 12), dtype=np.uint8)
    mask[0:3, 2:6, 2:6] = 3  # one region through three slices: 48 voxels
    mask[1, 9:11, 9:11] = 3  # a stray island of the same class
    mask[2, 0, 11] = 1  # the only region of class 1, however small
    out = largest_components(mask, 4)
    assert (out[0:3, 2:6, 2:6] == 3).all() and (out[1, 9:11, 9:11] == 0).all() and out[2, 0, 11] == 1
    assert np.array_equal(largest_components(mask, 4, per_slice=True)[1], out[1])


def test_post_processing_is_chosen_on_validation_and_followed(run, tmp_path, capsys):
    trained = json.loads((run / "finetune" / "summary.json").read_text())
    rows = list(csv.DictReader(open(run / "finetune" / "log.csv")))
    last = next(r for r in reversed(rows) if r.get("val_dice"))
    assert trained["largest_component"] == (float(last["val_dice_largest_component"]) > float(last["val_dice"]))
    for flags, expected in (([], trained["largest_component"]), (["--largest-component"], True),
                            (["--no-largest-component"], False)):
        out = tmp_path / f"ev{len(flags)}{expected}"
        assert main(["evaluate", str(run), "--split", "test", *flags, "--out", str(out)]) == 0
        assert json.loads((out / "summary.json").read_text())["largest_component"] is expected


def test_evaluate_refuses_a_split_without_labels(run, capsys):
    code = main(["evaluate", str(run), "--split", "train", "--dataset", str(run / "nope")])
    assert code == 2 and "not a dataset folder" in capsys.readouterr().err


def test_evaluate_split_without_labelled_cases_is_a_clear_error(run, tmp_path, capsys):
    from idealseg.data.prepare import prepare

    from ..conftest import write_ssl4mis

    other = prepare("ssl4mis", write_ssl4mis(tmp_path / "src"), tmp_path / "ds")  # no test.list
    code = main(["evaluate", str(run), "--split", "test", "--dataset", str(other)])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "split 'test' has no labelled cases to evaluate" in line


def test_predict_nifti_round_trip_keeps_geometry(run, tmp_path):
    image, _, p = phantom_raw(7, 0, 0)  # [Z, H, W] -> store as (x, y, z) like ACDC
    data = np.transpose(image, (2, 1, 0))
    theta = np.deg2rad(20)
    affine = np.array([[np.cos(theta) * 1.4, -np.sin(theta) * 1.4, 0, -80.0],
                       [np.sin(theta) * 1.4, np.cos(theta) * 1.4, 0, 31.0],
                       [0, 0, 9.0, -12.0], [0, 0, 0, 1]])
    src = write_nifti(tmp_path / "in" / "scan_0000.nii.gz", data, (1.4, 1.4, 9.0), affine)
    written = predict_files(run, src.parent, tmp_path / "out")
    assert [w.name for w in written] == ["scan_seg.nii.gz"]
    out = nib.load(str(written[0]))
    assert out.shape == data.shape and np.allclose(out.affine, nib.load(str(src)).affine)
    mask = np.asarray(out.dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2, 3}


def test_predict_single_file_name_and_2d(run, tmp_path):
    src = write_nifti(tmp_path / "slice.nii.gz", np.random.rand(40, 30).astype(np.float32), (1.0, 1.0))
    out = predict_files(run, src, tmp_path / "mask.nii.gz")[0]
    assert out.name == "mask.nii.gz" and nib.load(str(out)).shape == (40, 30)


def test_predict_rejects_multichannel(run, tmp_path, capsys):
    src = write_nifti(tmp_path / "cine.nii.gz", np.random.rand(20, 20, 4, 3).astype(np.float32), (1, 1, 8, 1))
    code = main(["predict", str(run), str(src), str(tmp_path / "o")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("idealseg predict: error: "), line
    assert "cine.nii.gz: expected a 2D or 3D image, got 4D" in line, line
    assert "(3 channels/frames)" in line, line


@pytest.mark.parametrize("method", [None, "ideal"])
def test_demo_end_to_end(tmp_path, capsys, method):
    """The demo runs train's default recipe (IDEAL pre-training, then bcp), or the method asked for."""
    out = tmp_path / "demo"
    args = ["--method", method] if method else []
    assert main(["demo", "--out", str(out), "--profile", "tiny", "--patients", "4", *args]) == 0
    import yaml

    assert yaml.safe_load((out / "run" / "finetune" / "config.yaml").read_text())["method"] == (method or "bcp")
    report = out / "run" / "finetune" / "report"
    assert (report / "report.md").exists() and (report / "finetune_curves.png").exists()
    assert len(list(report.glob("overlay_*.png"))) == 2
    assert "| mean |" in capsys.readouterr().out


@pytest.mark.parametrize("amp", [False, True])
def test_inference_follows_the_runs_precision(amp):
    """Served as trained: bfloat16 autocast where the run's amp is on and the CPU has native bfloat16,
    float32 otherwise (Predictor.from_method passes the run's own option)."""
    from types import SimpleNamespace

    from idealseg.inference.predictor import Predictor
    from idealseg.precision import cpu_has_native_bf16

    seen = []

    def predict(x):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return torch.nn.functional.one_hot((x[:, 0] > 0.5).long(), 2).permute(0, 3, 1, 2).float()

    cfg = SimpleNamespace(input_size=16, spacing_mm=0.0, amp=amp, in_channels=1)
    case = SimpleNamespace(image=np.random.default_rng(0).random((3, 20, 20), dtype=np.float32), spacing=None)
    mask = Predictor.from_method(SimpleNamespace(predict=predict), cfg, "cpu").predict(case.image, case.spacing)
    assert mask.shape == (3, 20, 20) and seen and all(s == (amp and cpu_has_native_bf16()) for s in seen)
