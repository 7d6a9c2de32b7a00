"""Which autocast dtype a run computes in, for training and for inference alike."""

from __future__ import annotations

import torch

from idealseg.runfolder.environment import cpu_has_native_bf16


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """Mixed precision where the hardware has it: bfloat16 on CUDA (float16, with a gradient scaler,
    where bf16 is missing) and on CPUs with native bfloat16 (AVX-512 BF16 or AMX: about 1.7x a float32
    step on this project's EPYC machines); None elsewhere or when `amp` is off."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None
