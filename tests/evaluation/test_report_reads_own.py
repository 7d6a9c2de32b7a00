"""`report` reads only what idealseg wrote: evaluation folders with idealseg's manifest, the
pre-training the run started from (its `init`), and the rows of log.csv that are numbers; its loss
legend stays clear of the Dice panel, and figures an earlier report drew but this one does not show
are not left behind."""

from __future__ import annotations

import csv
import json
import shutil

import matplotlib.pyplot as plt
import pytest
import yaml

from idealseg.cli import main
from idealseg.evaluation import figures


@pytest.fixture(scope="module")
def evaluated(run):
    """The module's `train` folder with its validation evaluated (RUN/finetune/eval_val)."""
    assert main(["evaluate", str(run), "--split", "val", "--threads", "1"]) == 0
    return run / "finetune"


def test_a_users_eval_folder_is_not_read(evaluated, capsys):
    paper = evaluated / "eval_paper"
    paper.mkdir()
    try:
        (paper / "summary.json").write_text(json.dumps({"note": "my own numbers"}))  # crashed it (KeyError)
        assert main(["report", str(evaluated), "--cases", "0", "--threads", "1"]) == 0
        shutil.copy(evaluated / "eval_val" / "summary.json", paper / "summary.json")  # complete-looking
        assert main(["report", str(evaluated), "--cases", "0", "--threads", "1"]) == 0
        text = (evaluated / "report" / "report.md").read_text()
    finally:
        shutil.rmtree(paper)
    assert "## val split" in text and "paper" not in text


def test_only_the_runs_own_init_is_shown_as_pre_training(evaluated, tmp_path, capsys):
    """A run trained from scratch beside a folder named `pretrain` shows no pre-training."""
    alone = tmp_path / "x" / "finetune"
    shutil.copytree(evaluated, alone)
    shutil.copytree(evaluated.parent / "pretrain", tmp_path / "x" / "pretrain")
    config = yaml.safe_load((alone / "config.yaml").read_text())
    config["init"] = None
    (alone / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["report", str(alone), "--cases", "0", "--threads", "1"]) == 0
    text = (alone / "report" / "report.md").read_text()
    assert "pre-training" not in text and not (alone / "report" / "pretrain_curves.png").exists()
    assert main(["report", str(evaluated), "--cases", "0", "--threads", "1"]) == 0  # its own init: shown
    assert "![pre-training]" in (evaluated / "report" / "report.md").read_text()


def test_a_garbage_row_in_log_csv_is_skipped_with_one_line(evaluated, tmp_path):
    alone = tmp_path / "run"
    shutil.copytree(evaluated, alone)
    with open(alone / "log.csv", "a", newline="") as f:
        f.write("garbage,not,a,number\n")
    with pytest.warns(UserWarning, match=r"skipped 1 row\(s\) that are not numbers") as seen:
        assert main(["report", str(alone), "--cases", "0", "--threads", "1"]) == 0
    assert sum("skipped" in str(w.message) for w in seen) == 1
    assert (alone / "report" / "finetune_curves.png").is_file()


def test_an_earlier_reports_extra_overlays_are_removed(evaluated, capsys):
    assert main(["report", str(evaluated), "--split", "train", "--cases", "2", "--threads", "1"]) == 0
    assert len(list((evaluated / "report").glob("overlay_*.png"))) == 2
    assert main(["report", str(evaluated), "--split", "train", "--cases", "1", "--threads", "1"]) == 0
    assert len(list((evaluated / "report").glob("overlay_*.png"))) == 1


def test_the_loss_legend_is_clear_of_the_dice_panel(tmp_path, monkeypatch):
    log = tmp_path / "log.csv"
    keys = ["step", "time", "lr", "loss", "sup", "unsup", "consistency_weight", "val_dice"]
    with open(log, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for step in range(10, 110, 10):
            writer.writerow({"step": step, "time": step, "lr": 0.01, "loss": 1 / step, "sup": 1, "unsup": 2,
                             "consistency_weight": step / 100, "val_dice": step / 200 if step % 50 == 0 else ""})
    seen = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: seen.setdefault("fig", fig))
    figures.training_curves(log, tmp_path / "c.png")
    fig = seen["fig"]
    fig.canvas.draw()
    loss_ax, dice_ax = fig.axes
    legend = loss_ax.get_legend().get_window_extent()
    assert legend.x1 < dice_ax.get_tightbbox().x0, (legend, dice_ax.get_window_extent())
    plt.close(fig)
