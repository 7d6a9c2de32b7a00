"""Typed run configuration: defaults, the two profiles of METHOD.md section 7, YAML overrides.

The resolved configuration is written into every run folder (config.yaml), which is what makes a
run folder enough to resume, evaluate or predict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from idealseg.atomic import atomic_file
from idealseg.errors import IdealsegError, InputError


@dataclass
class RunConfig:
    # what and where
    stage: str = "finetune"  # "pretrain" or "finetune"
    method: str = "ideal"
    dataset: str = ""
    labeled: str = "7"  # label budget, see data/budgets.py
    init: str | None = None  # pre-training run folder whose encoder initialises fine-tuning
    seed: int = 0
    profile: str = "cpu"
    # data and model
    input_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    num_classes: int = 4
    classes: tuple[str, ...] = ()
    normalization: str = ""  # the dataset's intensity normalisation, copied at training so predict needs no dataset
    # budget: whichever ends first; time_budget 0 = none
    iterations: int = 3000
    time_budget: float = 0.0
    batch_labeled: int = 8
    batch_unlabeled: int = 8
    # optimisation
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr: float = 0.01
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    # IDEAL fine-tuning and baselines
    sup_loss: str = "ce+dice"  # labelled-slice loss: "ce+dice" or "ssl4mis" (see losses/dice_ce.py)
    pseudo_threshold: float = 0.0  # ideal, cps: a hard pseudo-label counts where its softmax peak reaches this
    lambda_max: float = 0.1
    rampup: float = 0.4  # fraction of the budget over which lambda ramps up
    perturb1: str = "dropout"
    perturb2: str = "noise"
    ema_decay: float = 0.99
    labeled_warmup: float = 0.25  # bcp: fraction of the budget on labelled-only copy-paste (10k of 40k in the paper)
    unlabeled_weight: float = 0.5  # bcp: weight of pseudo-labelled pixels in the mixed slices
    confidence: float = 0.95  # unimatch, ideal weak_to_strong: softmax peak a pseudo-labelled pixel needs to count
    mixing: str = "none"  # ideal: "copy-paste" pastes labelled and unlabelled slices into each other (after BCP)
    weak_to_strong: bool = False  # ideal: confident weak-view labels also supervise the other stream's strong view
    # pre-training
    temperature: float = 0.1
    head: str = "dense"  # "dense" (1x1 convs, IDEAL) or "mlp" (pooled, ablation)
    dense_level: int = -1  # encoder level of the dense head; -1 = deepest
    momentum_key: float = 0.0  # 0: shared weights for E_Q and E_K; else MoCo momentum (0.99)
    global_weight: float = 0.0  # weight of the optional SimCLR term
    # engine
    val_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 10
    amp: bool = True  # on CUDA only
    channels_last: bool = True  # measured faster: CPU +25-30 %, CUDA bf16 2x (benchmarks/throughput.py)
    threads: int = 0  # torch CPU threads; 0 = torch's default

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["classes"] = list(self.classes)
        return d

    def save(self, path: Path) -> None:
        with atomic_file(path) as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)

    def update(self, values: dict[str, Any], source: str) -> RunConfig:
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            key = key.replace("-", "_")
            if key not in known:
                raise IdealsegError(f"{source}: unknown option {key!r}")
            if value is None:
                continue
            setattr(self, key, _checked(key, str(known[key].type), value, source))
            self.__dict__.setdefault("_sources", {})[key] = source  # for check()'s messages; not a field
        return self

    def check(self) -> RunConfig:
        """What no single option can check alone; run once every source is applied."""
        sources = self.__dict__.get("_sources", {})
        levels = len(self.channels)
        if not -levels <= self.dense_level < levels:
            raise IdealsegError(f"{sources.get('dense_level', 'defaults')}: option dense_level={self.dense_level} "
                                f"names no encoder level: the encoder has {levels} (use -{levels} to {levels - 1}; "
                                "-1 is the deepest)")
        needed = "batch_unlabeled" if self.stage == "pretrain" else "batch_labeled"
        if getattr(self, needed) < 1:
            raise IdealsegError(f"{sources.get(needed, 'defaults')}: option {needed}={getattr(self, needed)}: "
                                f"{self.stage} needs at least 1 slice a step")
        return self

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls().update(read_yaml(path), str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping, or a one-line error naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise InputError(path, f"unreadable ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(path, f"unreadable YAML ({where}{problem})") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of option: value")
    return data


# The `cpu` profile: see docs/training.md ("Profiles") for how these were chosen on a 2-core machine.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "pretrain": dict(input_size=128, iterations=100000, time_budget=480, batch_labeled=0,
                         batch_unlabeled=16, optimizer="adam", lr=1e-3, weight_decay=1e-5, val_every=0,
                         checkpoint_every=100),
        "finetune": dict(input_size=128, iterations=100000, time_budget=1200, batch_labeled=4,
                         batch_unlabeled=4, optimizer="sgd", lr=0.01, val_every=400, checkpoint_every=100),
    },
    "gpu": {
        "pretrain": dict(input_size=256, iterations=11000, time_budget=0, batch_labeled=0, batch_unlabeled=12,
                         optimizer="adam", lr=1e-3, weight_decay=1e-5, val_every=0, checkpoint_every=1000),
        "finetune": dict(input_size=256, iterations=30000, time_budget=0, batch_labeled=12, batch_unlabeled=12,
                         optimizer="sgd", lr=0.01, val_every=1000, checkpoint_every=1000),
    },
    "demo": {  # `idealseg demo`: the phantom end to end in a few minutes on 2 cores
        "pretrain": dict(input_size=64, iterations=100000, time_budget=45, batch_labeled=0, batch_unlabeled=16,
                         optimizer="adam", lr=1e-3, weight_decay=1e-5, val_every=0, checkpoint_every=50),
        "finetune": dict(input_size=64, iterations=100000, time_budget=150, batch_labeled=4, batch_unlabeled=4,
                         optimizer="sgd", lr=0.01, val_every=200, checkpoint_every=100),
    },
    "tiny": {  # tests and the demo's smoke runs: seconds, not minutes
        "pretrain": dict(input_size=64, iterations=20, batch_labeled=0, batch_unlabeled=4, optimizer="adam",
                         lr=1e-3, val_every=0, checkpoint_every=10, channels=(8, 16, 32, 64, 128)),
        "finetune": dict(input_size=64, iterations=20, batch_labeled=2, batch_unlabeled=2, val_every=10,
                         checkpoint_every=10, channels=(8, 16, 32, 64, 128)),
    },
}


def resolve_config(stage: str, profile: str, yaml_path: str | None, overrides: dict[str, Any]) -> RunConfig:
    """Defaults < profile < YAML file < command-line options (those not left at None)."""
    if profile not in PROFILES:
        raise IdealsegError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    cfg = RunConfig(stage=stage, profile=profile)
    cfg.update(PROFILES[profile][stage], f"profile {profile}")
    if yaml_path:
        cfg.update(read_yaml(yaml_path), yaml_path)
    cfg.update(overrides, "command line")
    cfg.stage = stage
    return cfg.check()


_TYPES: dict[str, tuple[tuple[type, ...], str, Callable[[Any], Any]]] = {  # annotation -> accepted, wording, convert
    "int": ((int,), "a whole number", int),
    "float": ((int, float), "a number", float),
    "bool": ((bool,), "true or false", bool),
    "str": ((str, Path), "a string", str),
    "str | None": ((str, Path), "a string", str),
    "tuple[int, ...]": ((list, tuple), "a list of whole numbers", tuple),
    "tuple[str, ...]": ((list, tuple), "a list of strings", tuple),
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "stage": ("pretrain", "finetune"),
    "optimizer": ("sgd", "adam"),
    "head": ("dense", "mlp"),
    "perturb1": ("dropout", "noise", "none"),
    "perturb2": ("dropout", "noise", "none"),
    "sup_loss": ("ce+dice", "ssl4mis"),
    "mixing": ("none", "copy-paste"),
}

_LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {  # option -> (allowed?, what is allowed)
    "iterations": (lambda v: v >= 1, ">= 1"),
    "time_budget": (lambda v: v >= 0, ">= 0 (0 = no time limit)"),
    "input_size": (lambda v: v >= 32 and v % 16 == 0,
                   "a multiple of 16 from 32 up (the U-Net halves it four times; its BatchNorm needs a 2x2 map)"),
    "batch_labeled": (lambda v: v >= 0, ">= 0"),
    "batch_unlabeled": (lambda v: v >= 0, ">= 0"),
    "num_classes": (lambda v: v >= 2, ">= 2 (background and at least one structure)"),
    "channels": (lambda v: len(v) == 5 and min(v) >= 1, "five positive channel counts, one per U-Net level"),
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "poly_power": (lambda v: v >= 0, ">= 0"),
    "lambda_max": (lambda v: v >= 0, ">= 0"),
    "rampup": (lambda v: 0 <= v <= 1, "a fraction of the budget, 0 to 1"),
    "ema_decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "labeled_warmup": (lambda v: 0 <= v <= 1, "a fraction of the budget, 0 to 1"),
    "unlabeled_weight": (lambda v: v >= 0, ">= 0"),
    "confidence": (lambda v: 0 <= v <= 1, "a probability, 0 to 1"),
    "pseudo_threshold": (lambda v: 0 <= v <= 1, "a probability, 0 to 1 (0 = every pixel counts)"),
    "temperature": (lambda v: v > 0, "> 0 (the paper uses 0.1)"),
    "momentum_key": (lambda v: 0 <= v < 1, "in [0, 1) (0 = shared weights)"),
    "global_weight": (lambda v: v >= 0, ">= 0"),
    "val_every": (lambda v: v >= 0, ">= 0 (0 = never)"),
    "checkpoint_every": (lambda v: v >= 1, ">= 1"),
    "log_every": (lambda v: v >= 1, ">= 1"),
    "threads": (lambda v: v >= 0, ">= 0 (0 = torch's default)"),
}


def _checked(key: str, annotation: str, value: Any, source: str) -> Any:
    """`value` converted to the option's type, or a one-line error naming the source and the option."""
    if key == "labeled" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # `labeled: 7` in YAML means 7 patients
    accepted, wording, convert = _TYPES[annotation]
    ok = isinstance(value, accepted) and (annotation == "bool" or not isinstance(value, bool))
    if ok and annotation.startswith("tuple"):
        item = str if "str" in annotation else int
        ok = all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    if not ok:
        raise IdealsegError(f"{source}: option {key!r} must be {wording}, got {value!r}")
    value = convert(value)
    if key in _CHOICES and value not in _CHOICES[key]:
        raise IdealsegError(f"{source}: option {key!r} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    if key in _LIMITS and not _LIMITS[key][0](value):
        raise IdealsegError(f"{source}: option {key!r} must be {_LIMITS[key][1]}, got {value!r}")
    return value
