"""The RunConfig dataclass: every option of a run, typed, frozen once resolved.

The resolved configuration is written into every run folder (config.yaml), which is what makes a
run folder enough to resume, evaluate or predict. It is frozen so that what the run-folder check
compared, what the Trainer built and what the folder records are one and the same; a derived
configuration (the dataset's values added) is a new object (`derive`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from idealseg.atomic import atomic_file
from idealseg.checks import is_whole
from idealseg.config.options import checked
from idealseg.config.resume_rules import LEGACY_VALUES
from idealseg.config.yaml_io import read_yaml
from idealseg.errors import IdealsegError


@dataclass(frozen=True)
class RunConfig:
    """Every option of a run, typed; the resolved copy in a run folder's config.yaml is what makes
    the folder enough to resume, evaluate and predict. Help, choices and ranges: `OPTIONS`."""

    # what and where
    stage: str = "finetune"  # "pretrain" or "finetune"
    method: str = "bcp"  # after IDEAL pre-training: the best IDEAL-based recipe on validation (docs/benchmarks.md)
    dataset: str = ""
    labeled: str = "all"  # label budget, see data/budgets.py: every labelled training patient unless asked
    init: str | None = None  # pre-training run folder whose encoder initialises fine-tuning
    seed: int = 0
    fold: int = -1  # a fold of the dataset's splits.json (-1: the dataset's own train/val split)
    profile: str = "cpu"
    # data and model
    input_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    num_classes: int = 4
    in_channels: int = 1  # image channels the network reads (multi-parametric MRI: several), set from the dataset
    classes: tuple[str, ...] = ()
    normalization: str = ""  # the dataset's intensity normalisation, copied at training so predict needs no dataset
    target_spacing: str = "auto"  # in-plane mm: "auto" (the dataset's median), "none" (resize), or a number
    spacing_mm: float = 0.0  # the spacing the run works at (0: none, slices resized), set from the dataset
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
    warmup_mixing: str = "copy-paste"  # bcp: the warm-up's labelled slices pasted into each other, or "none" (plain)
    unlabeled_weight: float = 0.5  # bcp: weight of pseudo-labelled pixels in the mixed slices
    confidence: float = 0.95  # unimatch, ideal weak_to_strong: softmax peak a pseudo-labelled pixel needs to count
    mixing: str = "none"  # ideal: "copy-paste" pastes labelled and unlabelled slices into each other (after BCP)
    weak_to_strong: bool = False  # ideal: confident weak-view labels also supervise the other stream's strong view
    augmentation: str = "weak"  # fine-tuning: "weak" (rotation, flips, zoom 0.9-1.1) or "nnunet" (transforms/augment)
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
    amp: bool = True  # bfloat16 autocast on CUDA and on CPUs with native bfloat16; losses stay float32
    channels_last: bool = True  # measured faster: CPU +25-30 %, CUDA bf16 2x (benchmarks/throughput.py)
    compile: str = "off"  # torch.compile of the networks: off, on, cudagraphs, max-autotune (not faster where measured)
    threads: int = 0  # torch CPU threads; 0 = torch's default
    device: str = "auto"  # cpu, cuda, cuda:N or mps; auto: CUDA where there is one
    sync_bn: bool = False  # under torchrun on CUDA: BatchNorm statistics over the global batch (pre-training: on)

    @property
    def fold_index(self) -> int | None:
        """The fold a dataset is read with (`Dataset(..., fold=)`): None for the dataset's own split."""
        return None if self.fold < 0 else self.fold

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-ready values (tuples as lists)."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["classes"] = list(self.classes)
        return d

    def save(self, path: Path) -> None:
        """Write config.yaml atomically (a kill never leaves half a config)."""
        with atomic_file(path) as f:
            yaml.safe_dump(self.to_dict(), f, sort_keys=False)

    def update(self, values: dict[str, Any], source: str) -> RunConfig:
        """A copy with `values` from `source` (a file or 'command line') applied, each checked as it is
        read, so that a bad value is one line naming where it came from."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        sources = dict(self.__dict__.get("_sources", {}))
        for key, value in values.items():
            key = str(key).replace("-", "_")  # a YAML key may be a number (`1: 2`): named, not a traceback
            if key not in known:
                raise IdealsegError(f"{source}: unknown option {key!r}")
            if value is None:
                continue
            changes[key] = checked(key, str(known[key].type), value, source)
            sources[key] = source  # for check()'s messages; not a field
        return self._with_sources(replace(self, **changes), sources)

    def derive(self, **values: Any) -> RunConfig:
        """A copy with values the caller computed (the stage, the dataset's classes and spacing): not
        checked as a user's option would be, and keeping the record of where each option came from."""
        return self._with_sources(replace(self, **values), dict(self.__dict__.get("_sources", {})))

    @staticmethod
    def _with_sources(cfg: RunConfig, sources: dict[str, str]) -> RunConfig:
        cfg.__dict__["_sources"] = sources  # beside the fields: a frozen dataclass still has its __dict__
        return cfg

    def check(self) -> RunConfig:
        """What no single option can check alone; run once every source is applied."""
        sources = self.__dict__.get("_sources", {})
        levels = len(self.channels)
        if not -levels <= self.dense_level < levels:
            raise IdealsegError(f"{sources.get('dense_level', 'defaults')}: option dense_level={self.dense_level} "
                                f"names no encoder level: the encoder has {levels} (use -{levels} to {levels - 1}; "
                                "-1 is the deepest)")
        if self.mixing != "none" and self.weak_to_strong:
            raise IdealsegError(f"{sources.get('weak_to_strong', 'defaults')}: options mixing={self.mixing} and "
                                "weak_to_strong=true cannot be combined yet; choose one")
        needed = "batch_unlabeled" if self.stage == "pretrain" else "batch_labeled"
        if getattr(self, needed) < 1:
            raise IdealsegError(f"{sources.get(needed, 'defaults')}: option {needed}={getattr(self, needed)}: "
                                f"{self.stage} needs at least 1 slice a step")
        return self

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a run folder's config.yaml with the same checks as any YAML (values older idealseg
        versions wrote and this one no longer accepts are read as what they now mean)."""
        values = read_yaml(path)
        for (key, old), new in LEGACY_VALUES.items():
            if values.get(key) == old:
                values[key] = new
        threads = values.get("threads")
        if is_whole(threads) and threads > (os.cpu_count() or 1):  # fine where it trained; here more threads
            values["threads"] = 0  # than cores only slow it down: torch's default (the cores, or OMP_NUM_THREADS)
        return cls().update(values, str(path))
