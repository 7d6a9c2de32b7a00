"""benchmarks/throughput.py's measure of the machine's limit: a matrix-product peak and counted FLOPs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


def load_script():
    spec = importlib.util.spec_from_file_location("throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_and_flops_per_image():
    tp = load_script()
    peak = tp.matmul_peak(torch.float32, torch.device("cpu"), n=256, repeats=3)
    assert 0.1 < peak < 1e5  # GFLOP/s of a real product, not a constant
    small, large = tp.flops_per_image(4, 32), tp.flops_per_image(4, 64)
    assert 2.5 < large["train"] / small["train"] < 4.5  # about 4x the pixels, about 4x the FLOPs
    assert 2 < small["train"] / small["inference"] < 4  # backward costs about twice the forward
