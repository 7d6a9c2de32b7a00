"""torch.compile for a method's networks, and the fused optimizers, where they pay.

Why: at the gpu profile's size (256 x 256, batch 24) the SSL4MIS-sized U-Net leaves an H200 idle
between kernel launches (about 28 ms a step for IDEAL, 18 ms for supervised, 2026-11-26), so a step
costs what Python and the launches cost. Inductor fuses each convolution's BatchNorm, activation
and dropout into fewer kernels; `cudagraphs` also replays each network's kernels as one CUDA graph.
On two CPU cores the same compilation took 128 s and was not faster (CHANGELOG), so `auto` compiles
on CUDA only.

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


def compile_mode(setting: str, device: torch.device) -> str | None:
    """The torch.compile mode for option `compile` on `device`; None means eager."""
    if setting == "auto":
        setting = "on" if device.type == "cuda" else "off"
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
