"""Methods learn, the engine resumes exactly, pre-trained encoders are really loaded."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from idealseg.config import resolve_config
from idealseg.engine.trainer import Trainer
from idealseg.errors import IdealsegError
from idealseg.methods import METHODS
from idealseg.runfolder.folder import load_encoder


def make_trainer(phantom, out, method, stage=None, resume=False, **over):
    stage = stage or METHODS[method].stage
    options = {"method": method, "dataset": str(phantom), "labeled": "2", "log_every": 1, "val_every": 0,
               "threads": 2, **over}
    return Trainer(resolve_config(stage, "tiny", None, options), out, resume=resume)


def losses_rows(run_dir):
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def losses(run_dir):
    with open(run_dir / "log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_lowers_its_loss(method, phantom, tmp_path):
    torch.manual_seed(0)
    pre = METHODS[method].stage == "pretrain"
    opts = {"lr": 3e-3, "batch_unlabeled": 8} if pre else {"lr": 0.02}
    make_trainer(phantom, tmp_path / method, method, iterations=30, input_size=32, **opts).fit()
    values = losses(tmp_path / method)
    assert len(values) == 30
    assert np.mean(values[-6:]) < (0.95 if pre else 0.9) * np.mean(values[:6]), values


def test_pretrained_encoder_is_loaded_into_finetuning(phantom, tmp_path):
    make_trainer(phantom, tmp_path / "pre", "ideal-pretrain", iterations=3).fit()
    encoder = load_encoder(tmp_path / "pre")
    for method in ("ideal", "supervised", "cps", "mean-teacher"):
        t = make_trainer(phantom, tmp_path / method, method, iterations=1, init=str(tmp_path / "pre"))
        for enc in t.method.encoders():
            for name, value in enc.state_dict().items():
                assert torch.equal(value.cpu(), encoder[name]), (method, name)
    fresh = make_trainer(phantom, tmp_path / "fresh", "ideal", iterations=1)
    first = next(iter(encoder))
    assert not torch.equal(fresh.method.encoder.state_dict()[first].cpu(), encoder[first])


@pytest.mark.parametrize("method", ["ideal-pretrain", "ideal", "bcp", "unimatch"])
def test_resume_gives_the_same_weights(method, phantom, tmp_path, monkeypatch):
    full = make_trainer(phantom, tmp_path / "full", method, iterations=12, checkpoint_every=4)
    full.fit()
    part = make_trainer(phantom, tmp_path / "part", method, iterations=12, checkpoint_every=4)
    monkeypatch.setattr(part, "_done", lambda: part.step >= 8)  # killed right after its step-8 checkpoint
    part.fit()
    monkeypatch.undo()
    resumed = make_trainer(phantom, tmp_path / "part", method, iterations=12, checkpoint_every=4, resume=True)
    assert resumed.step == 8
    resumed.fit()
    a, b = full.method.state_dict(), resumed.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_last_checkpoint_falls_back_to_previous(phantom, tmp_path):
    make_trainer(phantom, tmp_path / "run", "supervised", iterations=8, checkpoint_every=4).fit()
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated, as by a crash during a copy
    with pytest.warns(UserWarning, match="corrupt or truncated checkpoint"):
        t = make_trainer(phantom, tmp_path / "run", "supervised", iterations=8, resume=True)
    assert t.step == 4


@pytest.mark.parametrize("log_every, checkpoint_every, nan_step, names", [
    (1, 2, 5, r"last good checkpoint: .*last.pt \(step 4\)"),
    (10, 10, 3, "no checkpoint yet"),  # read back every 10 steps only (no wait for the device in between)
])
def test_divergence_names_step_and_checkpoint(phantom, tmp_path, log_every, checkpoint_every, nan_step, names):
    """A NaN loss stops training and names its exact step and the checkpoint to go back to, even when
    losses are read back only every few steps; no checkpoint is written after it."""
    t = make_trainer(phantom, tmp_path / "run", "supervised", iterations=20, log_every=log_every,
                     checkpoint_every=checkpoint_every)
    model = t.model

    def nan_at_step(*args):
        out = model(*args)
        return {**out, "loss": out["loss"] * float("nan")} if t.step == nan_step - 1 else out

    t.model = nan_at_step
    with pytest.raises(IdealsegError, match=rf"loss is nan at step {nan_step}; {names}"):
        t.fit()
    saved = tmp_path / "run" / "checkpoints" / "last.pt"
    assert not saved.exists() or torch.load(saved, weights_only=False)["step"] < nan_step


def test_real_divergence_is_caught(phantom, tmp_path):
    """A learning rate of 1e12 diverges within a few steps (which step depends on the device and precision)."""
    t = make_trainer(phantom, tmp_path / "run", "supervised", iterations=10, checkpoint_every=2, lr=1e12)
    diverged = r"training diverged: loss is (nan|inf) at step \d+; (last good|no checkpoint)"
    with pytest.raises(IdealsegError, match=diverged):
        t.fit()


def test_existing_run_folder_needs_resume_or_overwrite(phantom, tmp_path):
    make_trainer(phantom, tmp_path / "run", "supervised", iterations=2).fit()
    with pytest.raises(IdealsegError, match="pass --resume"):
        make_trainer(phantom, tmp_path / "run", "supervised", iterations=2)


def test_time_budget_stops_training(phantom, tmp_path):
    """The budget's last step is logged even between log steps (its losses are read back then)."""
    t = make_trainer(phantom, tmp_path / "run", "supervised", iterations=10**6, time_budget=1.5,
                     log_every=10**5, checkpoint_every=10**5)
    summary = t.fit()
    assert 0 < summary["steps"] < 10**6 and summary["seconds"] >= 1.5
    assert int(losses_rows(tmp_path / "run")[-1]["step"]) == summary["steps"]


def test_a_non_finite_loss_late_in_a_time_budget_is_caught(phantom, tmp_path):
    """A run that ends on its time budget between log steps still checks its last losses: no summary and
    no checkpoint after a NaN."""
    t = make_trainer(phantom, tmp_path / "run", "supervised", iterations=10**6, time_budget=1.5,
                     log_every=10**5, checkpoint_every=10**5)
    model = t.model

    def nan_from_step_1(*args):  # from the first step: however few steps 1.5 s allows on a busy machine
        out = model(*args)
        return {**out, "loss": out["loss"] * float("nan")}

    t.model = nan_from_step_1
    with pytest.raises(IdealsegError, match=r"loss is nan at step 1; no checkpoint yet"):
        t.fit()
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_validation_logs_pseudo_label_quality_of_each_stream(phantom, tmp_path):
    """The diagnostic of why consistency helps or not: each stream's Dice on unlabelled training slices
    (their labels are read for this only), the streams' disagreement and lambda(t), per validation."""
    t = make_trainer(phantom, tmp_path / "run", "ideal", iterations=4, val_every=2)
    assert len(t.probe) > 0 and not t.store.labeled[t.probe].any()
    t.fit()
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    val = [r for r in rows if r.get("val_dice")]
    assert len(val) == 2
    for r in val:
        assert 0 <= float(r["pl_dice_stream1"]) <= 1 and 0 <= float(r["pl_dice_stream2"]) <= 1
        assert 0 <= float(r["pl_disagree"]) <= 1
    lam = [float(r["lambda"]) for r in rows if r.get("lambda")]
    assert lam == sorted(lam) and 0 < lam[-1] <= 0.1  # ramps up to lambda_max


def test_mixed_precision_where_the_cpu_has_native_bfloat16(phantom, tmp_path):
    """bf16 autocast on a CPU with AVX-512 BF16/AMX (recorded in env.json), float32 with amp off;
    the losses stay float32 either way."""
    import json

    from idealseg.engine.trainer import autocast_dtype
    from idealseg.losses.dense_contrastive import DenseContrastiveLoss
    from idealseg.precision import cpu_has_native_bf16

    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, False) is None
    assert autocast_dtype(cpu, True) == (torch.bfloat16 if cpu_has_native_bf16() else None)
    make_trainer(phantom, tmp_path / "run", "ideal", iterations=2).fit()
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["autocast"] == ("torch.bfloat16" if cpu_has_native_bf16() else "off")
    z = torch.nn.functional.normalize(torch.randn(2, 8, 4, 4), dim=1)
    idx, ok = torch.arange(16).repeat(2, 1), torch.ones(2, 16, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = DenseContrastiveLoss(0.1)(z, z, idx, ok, idx, ok)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, DenseContrastiveLoss(0.1)(z, z, idx, ok, idx, ok), atol=1e-5)


def test_trainer_flushes_denormal_floats(phantom, tmp_path):
    """Denormals slow x86 arithmetic 10-100x; a long CPU run accumulated enough to run 3x slower."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormal floats (torch.set_flush_denormal returned False)")
    torch.set_flush_denormal(False)
    try:
        assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0
        make_trainer(phantom, tmp_path / "run", "supervised")
        assert torch.tensor([1e-40], dtype=torch.float32).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
