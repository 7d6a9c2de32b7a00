"""The one plan and the once-resolved run: plan.json from `prepare` to the run folder and `info`,
a frozen configuration, and each run's spacing and folder decided exactly once."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import pytest

from idealseg.config import RunConfig, resolve_config


def test_plan_is_written_by_prepare_copied_into_the_run_and_printed_by_info(phantom, supervised_run, capsys):
    from idealseg.cli import main
    from idealseg.data.dataset import Dataset
    from idealseg.data.fingerprint import make_plan
    from idealseg.data.target_spacing import resolve_spacing

    plan = json.loads((phantom / "plan.json").read_text())
    assert plan == make_plan(Dataset(phantom)) and plan["target_spacing_mm"] > 0
    assert plan["classes"] == Dataset(phantom).classes and plan["normalization"] == ["percentile"]
    assert resolve_spacing("auto", Dataset(phantom)) == plan["target_spacing_mm"]
    run = supervised_run  # trained on this phantom: read only
    assert json.loads((run / "plan.json").read_text()) == plan
    assert RunConfig.load(run / "config.yaml").spacing_mm == plan["target_spacing_mm"]
    assert main(["info", str(phantom)]) == 0
    out = capsys.readouterr().out
    shown = re.search(r"plan: target in-plane spacing ([\d.]+) mm", out).group(1)
    assert shown == f"{plan['target_spacing_mm']:.2f}"
    for name, patch in plan["patch"].items():
        assert f"profile {name}: {patch['pixels']} px patch covers {patch['covers_mm']:.0f} mm" in out


def test_a_dataset_without_plan_is_planned_on_the_fly_and_left_untouched(phantom, tmp_path):
    import shutil

    from idealseg.data.dataset import Dataset
    from idealseg.data.fingerprint import load_plan

    copy = tmp_path / "copy"
    shutil.copytree(phantom, copy)
    expected = json.loads((copy / "plan.json").read_text())
    (copy / "plan.json").unlink()
    assert load_plan(Dataset(copy)) == expected
    assert not (copy / "plan.json").exists()


def test_the_resolved_config_cannot_be_changed():
    cfg = resolve_config("finetune", "tiny", None, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    derived = cfg.derive(spacing_mm=1.5)
    assert derived.spacing_mm == 1.5 and cfg.spacing_mm == 0.0  # a new object; the resolved one unchanged


def _count_calls(monkeypatch, module: str, name: str) -> list:
    """Wrap `module.name` in every loaded idealseg module that imported it, recording each call's arguments."""
    original = getattr(sys.modules[module], name)
    calls: list = []

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    for loaded in list(sys.modules.values()):
        if getattr(loaded, "__name__", "").startswith("idealseg") and getattr(loaded, name, None) is original:
            monkeypatch.setattr(loaded, name, counted)
    return calls


def test_each_run_resolves_its_spacing_and_checks_its_folder_once(phantom, tmp_path, monkeypatch):
    import idealseg.pipeline  # noqa: F401  every module that could call them, loaded before they are wrapped

    spacing = _count_calls(monkeypatch, "idealseg.data.target_spacing", "resolve_spacing")
    folder = _count_calls(monkeypatch, "idealseg.runfolder.folder", "check_run_folder")
    idealseg.train(phantom, tmp_path / "run", profile="tiny", iterations=2, labeled="2", val_every=0, threads=1)
    assert len(spacing) == 2  # pre-training and fine-tuning, once each
    assert sorted(str(args[0]) for args in folder) == [str(tmp_path / "run" / "finetune"),
                                                       str(tmp_path / "run" / "pretrain")]
