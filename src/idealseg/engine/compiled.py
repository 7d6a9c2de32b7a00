"""torch.compile for a method's networks (option `compile`), and the fused optimizers on CUDA.

Why it exists: at the gpu profile's size (256 x 256, batch 24) the SSL4MIS-sized U-Net reaches
about 8 % of an H200's bfloat16 matrix-product peak (about 28 ms a step for IDEAL, 19 ms for
supervised), so fewer, fused kernels looked like the way to the issue's 8-minute protocol. Measured
(benchmarks/scripts/throughput.py --compile on, H200, 2026-11-27): 1161 images/s compiled against 1263
eager, so it is off by default; on two CPU cores it took 128 s to compile and was not faster
either (CHANGELOG). `cudagraphs` and `max-autotune` are there to be measured, not yet measured.

Only the networks (U-Net, encoder, decoders, heads) are compiled, each in place with
`nn.Module.compile`: augmentation, mixing and losses stay eager (their Python control flow would
break the graph), and parameter names, state dicts and checkpoints are the same as uncompiled.
"""

from __future__ import annotations

import torch
from torch import nn

from idealseg.models.heads import DenseProjectionHead, MLPHead
from idealseg.models.unet import Decoder, Encoder, UNet

NETWORKS = (UNet, Encoder, Decoder, DenseProjectionHead, MLPHead)
MODES = {"on": "default", "cudagraphs": "reduce-overhead", "max-autotune": "max-autotune-no-cudagraphs"}


def compile_mode(setting: str) -> str | None:
    """The torch.compile mode for option `compile`; None means eager."""
    return MODES.get(setting)


def compile_networks(method: nn.Module, mode: str | None = "default", backend: str = "inductor") -> list[str]:
    """Compile, in place, the outermost networks inside `method`; returns their names. A network
    compiled once is used by every call (two streams through one encoder share its compilation)."""
    names: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if isinstance(child, NETWORKS):
                child.compile(backend=backend, **({"mode": mode} if backend == "inductor" else {}))
                names.append(prefix + name)
            else:
                visit(child, f"{prefix}{name}.")

    visit(method, "")
    return names


def fused(device: torch.device) -> dict:
    """Keyword for torch.optim: one fused kernel per optimizer step on CUDA instead of a loop of
    foreach kernels (fewer launches); the CPU keeps the default."""
    return {"fused": True} if device.type == "cuda" else {}
