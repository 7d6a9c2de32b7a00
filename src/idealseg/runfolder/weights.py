"""Checkpoint weights meet the configuration that builds their network.

A run folder's config.yaml is what evaluate, predict and --resume build the network from; edited by
hand (another method, other channels), it describes a network the checkpoint does not hold, and
torch would answer with a state-dict traceback hundreds of lines long. `load_weights` says in one
line which option of config.yaml differs from what the checkpoint was trained with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from idealseg.config.resume_rules import RECORDED_KEYS
from idealseg.errors import InputError


def load_weights(method: nn.Module, state: Any, checkpoint: str | Path, config: str | Path) -> None:
    """Load `state["model"]` (read from `checkpoint`) into `method`, built from `config`; a checkpoint
    that does not fit is one line naming `config`, the option that differs, and its two values."""
    if not isinstance(state, Mapping) or not isinstance(state.get("model"), Mapping):
        raise InputError(checkpoint, "holds no model weights (not a checkpoint idealseg wrote)")
    cfg = getattr(method, "cfg", None)
    recorded = state.get("config")
    if cfg is not None and isinstance(recorded, Mapping):
        changed = recorded_differences(cfg, recorded, Path(checkpoint).name)
        if changed:
            raise InputError(config, f"{'; '.join(changed)}: config.yaml no longer describes the run its checkpoint "
                                     "holds; put back what it was trained with, or train a new run")
    problem = shape_difference(method.state_dict(), state["model"])
    if problem:
        what = (f"method {cfg.method}, channels {','.join(map(str, cfg.channels))}, {cfg.num_classes} classes"
                if cfg is not None else "this network")
        raise InputError(config, f"describes a network ({what}) that {Path(checkpoint).name} does not hold: "
                                 f"{problem}; put config.yaml back as the run wrote it, or train a new run")
    method.load_state_dict(state["model"])


def recorded_differences(cfg: Any, recorded: Mapping, name: str = "the checkpoint") -> list[str]:
    """`key is X but NAME was trained with Y` for each RECORDED_KEYS option that differs."""
    changed = []
    for key in RECORDED_KEYS:
        if key not in recorded or not hasattr(cfg, key):
            continue  # a checkpoint from before the option existed
        now, was = _plain(getattr(cfg, key)), _plain(recorded[key])
        if now != was:
            changed.append(f"{key} is {now!r} but {name} was trained with {was!r}")
    return changed


def shape_difference(model: Mapping, saved: Mapping) -> str | None:
    """The first weight the two state dicts disagree on (absent from one, or another shape), or None."""
    missing = [k for k in model if k not in saved]
    if missing:
        return f"it has no weight {missing[0]!r} ({len(missing)} missing)"
    extra = [k for k in saved if k not in model]
    if extra:
        return f"it holds weight {extra[0]!r} that this network lacks ({len(extra)} more than expected)"
    for key, tensor in model.items():
        other = saved[key]
        if tuple(getattr(other, "shape", ())) != tuple(tensor.shape):
            return (f"weight {key!r} is {list(getattr(other, 'shape', ()))} in the checkpoint, "
                    f"{list(tensor.shape)} in this network")
    return None


def _plain(value: Any) -> Any:
    """Tuples as lists, as config.yaml and a checkpoint's record hold them."""
    return list(value) if isinstance(value, (tuple, list)) else value
