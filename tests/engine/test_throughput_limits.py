"""benchmarks/scripts/throughput.py's measure of the machine's limit: a matrix-product peak and counted FLOPs."""

from __future__ import annotations

import tempfile

import torch

from ..conftest import load_benchmark_script


def test_peak_and_flops_per_image():
    tp = load_benchmark_script("throughput")
    peak = tp.matmul_peak(torch.float32, torch.device("cpu"), n=256, repeats=3)
    assert 0.1 < peak < 1e5  # GFLOP/s of a real product, not a constant
    small, large = tp.flops_per_image(4, 32), tp.flops_per_image(4, 64)
    assert 2.5 < large["train"] / small["train"] < 4.5  # about 4x the pixels, about 4x the FLOPs
    assert 2 < small["train"] / small["inference"] < 4  # backward costs about twice the forward


def test_profile_counts_each_steps_operators(phantom, tmp_path, monkeypatch):
    """--profile heads its table with the operators a step dispatches: a two-view pre-training step
    dispatches more than a supervised one, and the supervised side keeps the reference's SGD."""
    tp = load_benchmark_script("throughput")
    assert tp._trainer(phantom, tmp_path / "t", 32, 4, 1, True).cfg.optimizer == "sgd"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    counts = {}
    for method in ("supervised", "ideal-pretrain"):
        head = tp.profile_training(phantom, 32, 4, 2, tmp_path, method=method)
        counts[method] = int(head.split("; ")[-1].split()[0])
        assert (tmp_path / f"profile_{method}_off.txt").read_text().startswith(head)
    assert 100 < counts["supervised"] < counts["ideal-pretrain"], counts
    assert not any(scratch.iterdir())  # its temporary run folders are gone, none written after cleanup
