"""`idealseg report` for any run: figures a reader trusts (losses and Dice apart, a colour key)."""

from __future__ import annotations

import csv

import matplotlib.pyplot as plt

import idealseg
from idealseg.cli import main
from idealseg.evaluation import figures

from .conftest import TINY


def test_report_command_writes_curves_tables_and_overlays(run, capsys):
    assert main(["evaluate", str(run), "--split", "val"]) == 0
    assert main(["report", str(run), "--cases", "1"]) == 0
    report = run / "finetune" / "report"
    text = (report / "report.md").read_text()
    assert "method bcp" in text and "## val split" in text and "| mean |" in text
    assert (report / "finetune_curves.png").exists() and (report / "pretrain_curves.png").exists()
    assert len(list(report.glob("overlay_*.png"))) == 1
    assert "wrote" in capsys.readouterr().out


def test_report_api_and_its_one_line_errors(run, capsys):
    assert idealseg.report(run, split="val", cases=0) == run / "finetune" / "report"
    assert main(["report", str(run), "--cases", "-1"]) == 2
    assert capsys.readouterr().err.strip().startswith("idealseg report: error: cases")
    assert main(["report", str(run / "missing")]) == 2


def test_losses_and_dice_are_drawn_on_separate_axes(tmp_path, monkeypatch):
    log = tmp_path / "log.csv"
    rows = [{"step": 10, "time": 1, "lr": 0.1, "loss": 2.5, "sup": 2.0, "val_dice": "", "pl_dice_model": ""},
            {"step": 20, "time": 2, "lr": 0.1, "loss": 1.5, "sup": 1.0, "val_dice": 0.6, "pl_dice_model": 0.5}]
    with open(log, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    seen = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: seen.setdefault("fig", fig))
    figures.training_curves(log, tmp_path / "c.png")
    loss_ax, dice_ax = seen["fig"].axes
    assert {line.get_label() for line in loss_ax.lines} == {"loss", "sup"}
    assert {line.get_label() for line in dice_ax.lines} == {"val_dice", "pl_dice_model"}
    for ax in (loss_ax, dice_ax):  # the legend sits beside the plot, not over the curves
        assert ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1
    plt.close(seen["fig"])


def test_overlay_has_a_colour_key_naming_each_class(tmp_path, monkeypatch):
    import numpy as np

    seen = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: seen.setdefault("fig", fig))
    mask = np.zeros((3, 8, 8), np.uint8)
    mask[1, 2:5, 2:5] = 2
    figures.overlay(np.zeros((3, 8, 8)), mask, mask, tmp_path / "o.png", classes=["bg", "RV", "Myo", "LV"])
    labels = [t.get_text() for legend in seen["fig"].legends for t in legend.get_texts()]
    assert labels == ["RV", "Myo", "LV"]
    plt.close(seen["fig"])


def test_a_run_says_what_it_will_do_records_its_labelled_cases_and_draws_progress(run, capsys):
    import json

    finetune = run / "finetune"
    labelled = json.loads((finetune / "labelled.json").read_text())
    assert labelled["labeled"] == "2" and len(labelled["patients"]) == 2 and labelled["cases"]
    assert (finetune / "progress.png").exists() and (run / "pretrain" / "progress.png").exists()
    from idealseg.ownership import read_manifest

    assert {"labelled.json", "progress.png"} <= set(read_manifest(finetune)["written"])
    header = (finetune / "log.csv").read_text().splitlines()[0].split(",")
    assert {"val_dice_RV", "val_dice_Myo", "val_dice_LV"} <= set(header)  # each class's validation Dice


def test_the_banner_names_device_budget_spacing_and_labelled_patients(phantom, tmp_path, capsys):
    from idealseg.api import finetune

    finetune(phantom, tmp_path / "ft", labeled="2", method="supervised", **TINY)
    out = capsys.readouterr().out
    banner = out[out.index("finetune supervised on cpu"):].splitlines()
    assert "6 steps" in banner[0] and "px patches" in banner[0]
    assert banner[1].startswith("  labelled: 2 patients (") and "; validation: " in banner[1]


def test_device_and_threads_for_every_command_that_runs_a_model(run, phantom, tmp_path, capsys):
    import torch

    assert main(["evaluate", str(run), "--device", "cpu", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert main(["report", str(run), "--device", "cpu", "--cases", "0"]) == 0
    capsys.readouterr()
    for command in (["evaluate", str(run)], ["report", str(run)]):
        assert main([*command, "--device", "tpu"]) == 2
        assert "device 'tpu': not a device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["evaluate", str(run), "--device", "cuda"]) == 2
        assert "no CUDA GPU is visible here" in capsys.readouterr().err
        assert main(["finetune", str(phantom), "--out", str(tmp_path / "ft"), "--device", "cuda:1",
                     "--profile", "tiny", "--labeled", "1"]) == 2
        assert "no CUDA GPU is visible here" in capsys.readouterr().err and not (tmp_path / "ft").exists()
    assert main(["finetune", str(phantom), "--out", str(tmp_path / "cpu"), "--device", "cpu", "--profile", "tiny",
                 "--labeled", "1", "--iterations", "2", "--threads", "1"]) == 0
    assert "finetune bcp on cpu" in capsys.readouterr().out
