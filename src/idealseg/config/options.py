"""Every option of a run declared once: its help, who reads it, its choices or range, its checks.

The CLI's flags, the YAML checks and docs/options.md all come from `OPTIONS`; the type and the
default are the `RunConfig` field's. Which methods read an option is each method's own
declaration (`Method.reads`, see config/method_reads.py), merged in here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from idealseg.checks import SEED_MAX, is_real, is_whole
from idealseg.config.method_registry import method_names, method_readers
from idealseg.errors import IdealsegError
from idealseg.plugins import hint

_TYPES: dict[str, tuple[tuple[type, ...], str, Callable[[Any], Any]]] = {  # annotation -> accepted, wording, convert
    "int": ((int,), "a whole number", int),
    "float": ((int, float), "a number", float),
    "bool": ((bool,), "true or false", bool),
    "str": ((str, Path), "a string", str),
    "str | None": ((str, Path), "a string", str),
    "tuple[int, ...]": ((list, tuple), "a list of whole numbers", tuple),
    "tuple[str, ...]": ((list, tuple), "a list of strings", tuple),
}


@dataclass(frozen=True)
class Option:
    """Everything about one RunConfig option but its type and default (the dataclass field's):
    the help the CLI and the docs show, who reads it, its choices or its range."""

    help: str
    readers: tuple[str, ...] = ()  # stages (here) and methods (their `reads`) that read it; () = every run
    choices: tuple[str, ...] = ()
    limit: tuple[Callable[[Any], bool], str] | None = None  # (allowed?, what is allowed)
    cli: bool = True  # a command-line flag (False: set from the dataset, or internal)


_FRACTION = (lambda v: 0 <= v <= 1, "a fraction, 0 to 1")


def max_threads() -> int:
    """The most CPU threads a run may ask for: more than a few per core only slows it, and OpenMP crashes
    (not an error, a segmentation fault) when asked for tens of thousands."""
    return 4 * (os.cpu_count() or 1)
_PROBABILITY = (lambda v: 0 <= v <= 1, "a probability, 0 to 1")
_NON_NEGATIVE = (lambda v: v >= 0, ">= 0")


def _is_spacing(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("auto", "none"):
        return True
    try:
        return 0 < float(text) < float("inf")
    except ValueError:
        return False


_DECLARED: dict[str, Option] = {
    "stage": Option("pretrain or finetune", choices=("pretrain", "finetune"), cli=False),
    "method": Option("training method", cli=False),  # the CLI's --method lists the registry's names
    "dataset": Option("dataset folder written by `idealseg prepare`", cli=False),
    "labeled": Option("label budget: 7, 10%, ssl4mis:7, all or @ids.txt", readers=("finetune",)),
    "init": Option("pre-training run folder (or encoder.pt) to initialise the encoder from", readers=("finetune",)),
    "seed": Option("random seed (labelled patients, sampling, augmentation, initialisation)",
                   limit=(lambda v: 0 <= v <= SEED_MAX, f"from 0 to {SEED_MAX} (2**32-1, the seeds numpy accepts)")),
    "fold": Option("cross-validation fold of the dataset's splits.json (0 to 4, nnU-Net's splits_final.json "
                   "format): its val patients validate, the others train; -1: the dataset's own val split",
                   readers=("finetune",), limit=(lambda v: v >= -1, ">= -1 (-1 = the dataset's own split)")),
    "profile": Option("cpu, gpu, demo or tiny: the defaults the other options start from", cli=False),
    "input_size": Option("square training input size in pixels",
                         limit=(lambda v: v >= 32 and v % 16 == 0, "a multiple of 16 from 32 up (the U-Net halves "
                                "it four times; its BatchNorm needs a 2x2 map)")),
    "channels": Option("U-Net channels per level, e.g. 16,32,64,128,256",
                       limit=(lambda v: len(v) == 5 and min(v) >= 1, "five positive channel counts, one per level")),
    "num_classes": Option("set from the dataset", limit=(lambda v: v >= 2, ">= 2"), cli=False),
    "in_channels": Option("image channels the network reads (CASE_0000, CASE_0001, ...): set from the dataset",
                          limit=(lambda v: v >= 1, ">= 1"), cli=False),
    "classes": Option("set from the dataset", cli=False),
    "normalization": Option("set from the dataset", cli=False),
    "target_spacing": Option("in-plane spacing in mm the network works at: auto (the dataset's median, when every "
                             "case knows its spacing), none (slices resized to the input, as SSL4MIS), or a number",
                             limit=(_is_spacing, "auto, none or a spacing in mm > 0")),
    "spacing_mm": Option("set from the dataset and target_spacing", cli=False),
    "iterations": Option("maximum number of optimizer steps", limit=(lambda v: v >= 1, ">= 1")),
    "time_budget": Option("wall-clock budget in seconds (0 = none); whichever of the two ends first",
                          limit=(lambda v: v >= 0, ">= 0 (0 = no time limit)")),
    "batch_labeled": Option("labelled slices per step", readers=("finetune",), limit=_NON_NEGATIVE),
    "batch_unlabeled": Option("unlabelled slices per step", limit=_NON_NEGATIVE),
    "optimizer": Option("sgd (momentum 0.9) or adam", choices=("sgd", "adam")),
    "lr": Option("base learning rate (poly decay)", limit=(lambda v: v > 0, "> 0")),
    "weight_decay": Option("weight decay", limit=_NON_NEGATIVE),
    "poly_power": Option("exponent of the poly learning-rate decay", limit=_NON_NEGATIVE),
    "sup_loss": Option("labelled-slice loss: ce+dice, or ssl4mis (0.5 CE + 0.5 Dice with background)",
                       readers=("finetune",), choices=("ce+dice", "ssl4mis")),
    "pseudo_threshold": Option("cross pseudo-labels count where their softmax peak reaches this (0 = all)",
                               limit=_PROBABILITY),
    "lambda_max": Option("consistency weight after ramp-up", limit=_NON_NEGATIVE),
    "rampup": Option("fraction of the budget over which the consistency weight ramps up", limit=_FRACTION),
    "perturb1": Option("feature perturbation of IDEAL's first decoder", choices=("dropout", "noise", "none")),
    "perturb2": Option("feature perturbation of IDEAL's second decoder", choices=("dropout", "noise", "none")),
    "ema_decay": Option("decay of the EMA teacher", limit=(lambda v: 0 <= v < 1, "in [0, 1)")),
    "labeled_warmup": Option("fraction of the budget on labelled-only copy-paste before self-training",
                             limit=_FRACTION),
    "warmup_mixing": Option("bcp's warm-up: copy-paste between labelled slices, or none (plain supervised "
                            "steps)", choices=("copy-paste", "none")),
    "unlabeled_weight": Option("weight of pseudo-labelled pixels in copy-paste mixed slices", limit=_NON_NEGATIVE),
    "confidence": Option("softmax peak a weak-view pseudo-label needs to count", limit=_PROBABILITY),
    "mixing": Option("none, or copy-paste (BCP's two mixing directions inside IDEAL)", choices=("none", "copy-paste")),
    "weak_to_strong": Option("confident weak-view labels also supervise the other stream's strong view"),
    "augmentation": Option("fine-tuning augmentation of every slice, labelled and unlabelled: weak (rotation, "
                           "flips, zoom 0.9-1.1) or nnunet (nnU-Net's 2D scaling, rotation, mirroring, noise, blur, "
                           "brightness, contrast, low resolution, gamma)", readers=("finetune",),
                           choices=("weak", "nnunet")),
    "temperature": Option("contrastive temperature", limit=(lambda v: v > 0, "> 0 (the paper uses 0.1)")),
    "head": Option("pre-training head: dense (1x1 convs, IDEAL) or mlp (ablation)", choices=("dense", "mlp")),
    "dense_level": Option("encoder level of the dense head (-1 = deepest)"),
    "momentum_key": Option("0: shared query/key encoders; else the key side's EMA momentum",
                           limit=(lambda v: 0 <= v < 1, "in [0, 1) (0 = shared)")),
    "global_weight": Option("weight of the optional global NT-Xent term", limit=_NON_NEGATIVE),
    "val_every": Option("validate every N steps (0 = never)", readers=("finetune",),
                        limit=(lambda v: v >= 0, ">= 0 (0 = never)")),
    "checkpoint_every": Option("checkpoint every N steps", limit=(lambda v: v >= 1, ">= 1")),
    "log_every": Option("log every N steps", limit=(lambda v: v >= 1, ">= 1")),
    "amp": Option("mixed precision: bfloat16 on CUDA (float16 with a scaler where bf16 is missing) and on CPUs "
                  "with native bfloat16 (AVX-512 BF16, AMX); losses are computed in float32"),
    "channels_last": Option("channels_last memory format (faster on CPU and CUDA)"),
    "compile": Option("torch.compile the networks: off, on (inductor), cudagraphs (inductor and CUDA graphs) or "
                      "max-autotune; off by default: on was slower than eager on an H200 and on 2 CPU cores",
                      choices=("off", "on", "cudagraphs", "max-autotune")),
    "threads": Option("torch CPU threads (0 = torch's default)",
                      limit=(lambda v: 0 <= v <= max_threads(), "0 (torch's default) to 4x this machine's cores")),
    "device": Option("where to train: cpu, cuda, cuda:N (the N-th GPU) or mps (Apple GPUs, where torch has it); "
                     "auto: CUDA where there is one, else the CPU; under torchrun each process takes its own GPU"),
    "sync_bn": Option("under torchrun on CUDA, BatchNorm statistics over the global batch (SyncBatchNorm), so that "
                      "N processes train as one; CPU processes keep their own (PyTorch's needs a GPU)"),
}
OPTIONS: dict[str, Option] = {name: replace(option, readers=option.readers + method_readers(name))
                              for name, option in _DECLARED.items()}


def reads(option: str, stage: str, method: str) -> bool:
    """Whether a run of `stage` with `method` reads `option` (an unknown name: yes, so that `update` names it)."""
    readers = OPTIONS[option].readers if option in OPTIONS else ()
    return not readers or stage in readers or method in readers


def checked(key: str, annotation: str, value: Any, source: str) -> Any:
    """`value` converted to the option's type, or a one-line error naming the source and the option."""
    if (key == "labeled" and is_whole(value)) or (key == "target_spacing" and is_real(value)):
        value = str(value)  # `labeled: 7` in YAML means 7 patients, `target_spacing: 1.5` 1.5 mm
    accepted, wording, convert = _TYPES[annotation]
    ok = isinstance(value, accepted) and (annotation == "bool" or not isinstance(value, bool))
    if ok and annotation.startswith("tuple"):
        item = str if "str" in annotation else int
        ok = all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    if not ok:
        raise IdealsegError(f"{source}: option {key!r} must be {wording}, got {value!r}{_yaml_hint(annotation, value)}")
    value = convert(value)
    if annotation == "float" and not math.isfinite(value):  # inf passes every `>= 0`, nan fails them all
        raise IdealsegError(f"{source}: option {key!r} must be a finite number, got {value!r}")
    if key == "method" and value not in method_names():
        raise IdealsegError(f"{source}: unknown method {value!r}; expected one of {method_names()} ({hint()})")
    option = OPTIONS[key]
    if option.choices and value not in option.choices:
        raise IdealsegError(f"{source}: option {key!r} must be one of {', '.join(option.choices)}, got {value!r}")
    if option.limit and not option.limit[0](value):
        raise IdealsegError(f"{source}: option {key!r} must be {option.limit[1]}, got {value!r}")
    return value


def _yaml_hint(annotation: str, value: Any) -> str:
    """Why a number came as text: quotes, or YAML 1.1 reading `1e-3` (no dot) as a string."""
    if annotation not in ("int", "float") or not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    if "e" in value.lower() and "." not in value:
        return " (YAML reads 1e-3 without a dot as text: write 1.0e-3)"
    return " (text, not a number: remove the quotes)"
