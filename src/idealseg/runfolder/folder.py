"""A run folder: config.yaml, log.csv, checkpoints/{last,best}.pt, encoder.pt for pre-training."""

from __future__ import annotations

import json
import os
import socket
import warnings
from pathlib import Path

import torch

from idealseg.config import RunConfig
from idealseg.config.resume_rules import RESUME_KEYS
from idealseg.errors import IdealsegError, InputError
from idealseg.methods import Method, get_method
from idealseg.models.unet import fold_batchnorm
from idealseg.ownership import check_not_link, check_replaceable, describe, foreign_files, owned
from idealseg.runfolder.checkpoint import load_checkpoint
from idealseg.runfolder.weights import load_weights
from idealseg.writer_lock import LOCK, live_holder


def is_run_folder(run_dir: Path) -> bool:
    """idealseg's run folder: its manifest says so (a config.yaml alone proves nothing: a user's
    experiment folder may hold one, and would be wiped by --overwrite)."""
    return owned(run_dir, "run")


def check_run_folder(run_dir: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, a run folder that `cfg` may not start, continue or replace."""
    check_not_link(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise InputError(run_dir, "exists and is not a folder")
    if not any(p.name != LOCK for p in run_dir.iterdir()):
        return
    if not is_run_folder(run_dir):
        check_replaceable(run_dir, "run")  # says why: no manifest, another kind, or the user's files
        raise IdealsegError(f"{run_dir}: not an idealseg run folder; choose a new run folder")
    if not (resume or overwrite):
        raise IdealsegError(f"{run_dir}: run folder exists (pass --resume to continue or --overwrite)")
    foreign = foreign_files(run_dir, "run")
    if foreign:
        raise IdealsegError(f"{run_dir}: holds files idealseg did not write ({describe(foreign)}); "
                            "idealseg will not write into it: move them out or choose a new run folder")
    if resume and (run_dir / "config.yaml").is_file():
        old = RunConfig.load(run_dir / "config.yaml")
        for key in RESUME_KEYS:
            was, now = getattr(old, key), getattr(cfg, key)
            if key in ("dataset", "init") and was and now:
                was, now = str(Path(was).resolve()), str(Path(now).resolve())
            if was != now:
                hint = ("; pass --target-spacing none to continue a run trained on resized slices, or start a "
                        "new run folder" if key == "spacing_mm" and not was
                        else "; resume with the same options or start a new run folder")
                raise IdealsegError(f"{run_dir}: --resume with {key}={now!r}, but this run was started with "
                                    f"{key}={was!r}{hint}")


def resolve_run(run: str | Path) -> Path:
    """Accept a fine-tuning run folder, or a `train` folder holding `finetune/`."""
    run = Path(run)
    if (run / "finetune" / "config.yaml").is_file():
        return run / "finetune"
    if not (run / "config.yaml").is_file():
        raise InputError(run, "not a run folder (no config.yaml)")
    return run


def load_run(run: str | Path, checkpoint: str = "last", device="cpu") -> tuple[RunConfig, Method, Path]:
    """(config, method with weights in eval mode and BatchNorm folded, run folder) for inference."""
    run = resolve_run(run)
    cfg = RunConfig.load(run / "config.yaml")
    if cfg.stage != "finetune":
        raise IdealsegError(f"{run}: a {cfg.stage} run has no segmentation head; use a fine-tuning run")
    path = run / "checkpoints" / f"{checkpoint}.pt"
    check_training(run, path)
    if checkpoint == "best" and not path.exists() and (run / "checkpoints" / "last.pt").exists():
        raise InputError(path, "no best checkpoint: this run never validated (use --checkpoint last)")
    state = load_checkpoint(path, map_location="cpu")
    method = get_method(cfg.method)(cfg)
    load_weights(method, state, path, run / "config.yaml")
    method = fold_batchnorm(method).to(device)
    if cfg.channels_last:  # as trained; about 30 % faster inference on the CPU too
        method = method.to(memory_format=torch.channels_last)
    return cfg, method, run


def training_holder(run_dir: Path) -> dict | None:
    """The live process of another command writing the run folder (a training still running), or None."""
    holder = live_holder(run_dir)
    if holder is None:
        return None
    if holder.get("host") == socket.gethostname() and int(holder.get("pid", 0)) == os.getpid():
        return None  # this process's own run (a benchmark scoring the run it just trained)
    return holder


def check_training(run_dir: Path, checkpoint: Path) -> None:
    """A run still training is used as its checkpoint is now, with one line saying so (its weights
    will change); one with no checkpoint yet is refused, naming the process that trains it."""
    holder = training_holder(run_dir)
    if holder is None:
        return
    who = f"process {holder.get('pid')} on {holder.get('host')}"
    if holder.get("purpose") == "report":  # a report writes its figures; the weights do not change
        return
    if not checkpoint.is_file():
        raise InputError(run_dir, f"is still training ({who}) and has no {checkpoint.name} yet; wait for its "
                                  "first checkpoint or for the run to end")
    warnings.warn(f"{run_dir}: is still training ({who}); using {checkpoint.name} as it is now (it may change)",
                  stacklevel=3)


def run_largest_component(run: str | Path) -> bool:
    """Whether the run's validation chose to keep each class's largest connected component
    (summary.json, written when fine-tuning ends; runs without it: no post-processing)."""
    path = resolve_run(run) / "summary.json"
    try:
        return bool(json.loads(path.read_text()).get("largest_component", False))
    except (OSError, ValueError):
        return False


def load_encoder(init: str | Path) -> dict:
    """The pre-trained encoder weights of a pre-training run folder (or an encoder.pt file)."""
    init = Path(init)
    path = init if init.suffix == ".pt" else init / "encoder.pt"
    if not path.is_file() and (init / "pretrain" / "encoder.pt").is_file():
        path = init / "pretrain" / "encoder.pt"
    state = load_checkpoint(path)
    encoder = state.get("encoder")
    if not isinstance(encoder, dict) or not all(isinstance(v, torch.Tensor) for v in encoder.values()):
        raise InputError(path, "not an encoder checkpoint (no 'encoder' entry of weights)")
    return encoder


def load_pretrained(method: Method, init: str | Path) -> None:
    """Initialise `method`'s encoders from a pre-training, or say in one line why it does not fit."""
    state = load_encoder(init)
    try:
        method.load_pretrained(state)
    except RuntimeError:
        channels = ", ".join(str(c) for c in method.cfg.channels)
        raise InputError(init, f"its pre-trained encoder does not fit this run's network (channels {channels}; "
                               f"{method.cfg.in_channels} image channel(s)); pre-train with the same channels "
                               "and input, on scans of as many channels") from None


def encoder_state(method: Method) -> dict[str, torch.Tensor]:
    """A CPU copy of the method's first encoder's weights, what encoder.pt stores for `--init`."""
    return {k: v.detach().cpu().clone() for k, v in method.encoders()[0].state_dict().items()}
