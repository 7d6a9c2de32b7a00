"""Typed run configuration: defaults, the two profiles of METHOD.md section 7, YAML overrides.

The resolved configuration is written into every run folder (config.yaml), which is what makes a
run folder enough to resume, evaluate or predict.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from idealseg.atomic import atomic_file
from idealseg.checks import SEED_MAX, is_real, is_whole
from idealseg.errors import IdealsegError, InputError


@dataclass
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
    profile: str = "cpu"
    # data and model
    input_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    num_classes: int = 4
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
    augmentation: str = "weak"  # fine-tuning: "weak" (rotation, flips, zoom 0.9-1.1) or "nnunet" (data/augment.py)
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
    sync_bn: bool = False  # under torchrun on CUDA: BatchNorm statistics over the global batch (pre-training: on)

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
        """Apply `values` from `source` (a file or 'command line'), checking each as it is read, so that a
        bad value is one line naming where it came from."""
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            key = str(key).replace("-", "_")  # a YAML key may be a number (`1: 2`): named, not a traceback
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
        return cls().update(values, str(path))


# compile: auto (compiled on CUDA) was the default until the H200 measured compiling slower than eager
# (2026-11-27); run folders written then say `auto`. It changes no weights, so they read as `off`.
LEGACY_VALUES = {("compile", "auto"): "off"}


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
                         batch_unlabeled=4, optimizer="adam", lr=1e-3, val_every=400, checkpoint_every=100),
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


for _stages in PROFILES.values():  # contrastive pre-training normalises over the global batch under torchrun
    _stages["pretrain"].setdefault("sync_bn", True)


def resolve_config(stage: str, profile: str | None, yaml_path: str | None, overrides: dict[str, Any],
                   resumed: dict[str, Any] | None = None, source: str = "command line") -> RunConfig:
    """Defaults < profile < the resumed run's own options < YAML file < command-line options (those not
    left at None).

    The profile is the command line's, else the YAML's `profile:`, else the resumed run's, else cpu.
    `resumed` (a run folder's recorded options, on --resume) sits above the profile so that a run
    continues as it was started even where a newer idealseg changed a default (the cpu profile's
    optimiser, `train`'s method). An option that the dataset sets (classes, their number, the
    normalisation) is refused from the user; one that the chosen method and stage do not read is
    warned about by name (it would change nothing). `source` names where `overrides` came from in
    those messages.
    """
    values = read_yaml(yaml_path) if yaml_path else {}
    resumed = resumed or {}
    profile = profile or values.get("profile") or resumed.get("profile") or "cpu"
    if not isinstance(profile, str) or profile not in PROFILES:
        raise IdealsegError(f"{yaml_path or 'command line'}: unknown profile {profile!r}; "
                            f"expected one of {sorted(PROFILES)}")
    cfg = RunConfig(stage=stage, profile=profile)
    cfg.update(PROFILES[profile][stage], f"profile {profile}")
    cfg.update({k: v for k, v in resumed.items() if k != "profile"}, "the resumed run's config.yaml")
    user = {}
    for origin, given in ((yaml_path, values), (source, overrides)):
        if given:
            cfg.update({k: v for k, v in given.items() if k != "profile"}, str(origin))
            user.update({k.replace("-", "_"): str(origin) for k, v in given.items() if v is not None})
    cfg.stage = stage
    if stage == "pretrain" and "method" not in user and "method" not in resumed:
        cfg.method = "ideal-pretrain"  # the stage's default method, unless a source named one
    for key, origin in user.items():
        if key in FROM_DATASET:
            raise IdealsegError(f"{origin}: option {key!r} comes from the dataset's dataset.json; remove it")
        if key in OPTIONS and not reads(key, stage, cfg.method):
            who = ", ".join(OPTIONS[key].readers)
            warnings.warn(f"{origin}: option {key!r} is read by {who} only; {stage} with {cfg.method} ignores it",
                          stacklevel=2)
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


@dataclass(frozen=True)
class Option:
    """Everything about one RunConfig option but its type and default (the dataclass field's):
    the help the CLI and the docs show, who reads it, its choices or its range."""

    help: str
    readers: tuple[str, ...] = ()  # methods or stages that read it; () = every run
    choices: tuple[str, ...] = ()
    limit: tuple[Callable[[Any], bool], str] | None = None  # (allowed?, what is allowed)
    cli: bool = True  # a command-line flag (False: set from the dataset, or internal)


FINETUNE_CONSISTENCY = ("ideal", "cps", "mean-teacher")
PRETRAIN = ("ideal-pretrain", "gcl-lcl-pretrain")
_FRACTION = (lambda v: 0 <= v <= 1, "a fraction, 0 to 1")
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


OPTIONS: dict[str, Option] = {
    "stage": Option("pretrain or finetune", choices=("pretrain", "finetune"), cli=False),
    "method": Option("training method", cli=False),  # the CLI's --method lists the registry's names
    "dataset": Option("dataset folder written by `idealseg prepare`", cli=False),
    "labeled": Option("label budget: 7, 10%, ssl4mis:7, all or @ids.txt", readers=("finetune",)),
    "init": Option("pre-training run folder (or encoder.pt) to initialise the encoder from", readers=("finetune",)),
    "seed": Option("random seed (labelled patients, sampling, augmentation, initialisation)",
                   limit=(lambda v: 0 <= v <= SEED_MAX, f"from 0 to {SEED_MAX} (2**32-1, the seeds numpy accepts)")),
    "profile": Option("cpu, gpu, demo or tiny: the defaults the other options start from", cli=False),
    "input_size": Option("square training input size in pixels",
                         limit=(lambda v: v >= 32 and v % 16 == 0, "a multiple of 16 from 32 up (the U-Net halves "
                                "it four times; its BatchNorm needs a 2x2 map)")),
    "channels": Option("U-Net channels per level, e.g. 16,32,64,128,256",
                       limit=(lambda v: len(v) == 5 and min(v) >= 1, "five positive channel counts, one per level")),
    "num_classes": Option("set from the dataset", limit=(lambda v: v >= 2, ">= 2"), cli=False),
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
                               readers=("ideal", "cps"), limit=_PROBABILITY),
    "lambda_max": Option("consistency weight after ramp-up", readers=FINETUNE_CONSISTENCY, limit=_NON_NEGATIVE),
    "rampup": Option("fraction of the budget over which the consistency weight ramps up",
                     readers=FINETUNE_CONSISTENCY, limit=_FRACTION),
    "perturb1": Option("feature perturbation of IDEAL's first decoder", readers=("ideal",),
                       choices=("dropout", "noise", "none")),
    "perturb2": Option("feature perturbation of IDEAL's second decoder", readers=("ideal",),
                       choices=("dropout", "noise", "none")),
    "ema_decay": Option("decay of the EMA teacher", readers=("mean-teacher", "bcp"),
                        limit=(lambda v: 0 <= v < 1, "in [0, 1)")),
    "labeled_warmup": Option("fraction of the budget on labelled-only copy-paste before self-training",
                             readers=("bcp",), limit=_FRACTION),
    "warmup_mixing": Option("bcp's warm-up: copy-paste between labelled slices, or none (plain supervised "
                            "steps)", readers=("bcp",), choices=("copy-paste", "none")),
    "unlabeled_weight": Option("weight of pseudo-labelled pixels in copy-paste mixed slices",
                               readers=("bcp", "ideal"), limit=_NON_NEGATIVE),
    "confidence": Option("softmax peak a weak-view pseudo-label needs to count",
                         readers=("unimatch", "ideal"), limit=_PROBABILITY),
    "mixing": Option("none, or copy-paste (BCP's two mixing directions inside IDEAL)", readers=("ideal",),
                     choices=("none", "copy-paste")),
    "weak_to_strong": Option("confident weak-view labels also supervise the other stream's strong view",
                             readers=("ideal",)),
    "augmentation": Option("fine-tuning augmentation of every slice, labelled and unlabelled: weak (rotation, "
                           "flips, zoom 0.9-1.1) or nnunet (nnU-Net's 2D scaling, rotation, mirroring, noise, blur, "
                           "brightness, contrast, low resolution, gamma)", readers=("finetune",),
                           choices=("weak", "nnunet")),
    "temperature": Option("contrastive temperature", readers=PRETRAIN,
                          limit=(lambda v: v > 0, "> 0 (the paper uses 0.1)")),
    "head": Option("pre-training head: dense (1x1 convs, IDEAL) or mlp (ablation)", readers=("ideal-pretrain",),
                   choices=("dense", "mlp")),
    "dense_level": Option("encoder level of the dense head (-1 = deepest)", readers=("ideal-pretrain",)),
    "momentum_key": Option("0: shared query/key encoders; else the key side's EMA momentum",
                           readers=("ideal-pretrain",), limit=(lambda v: 0 <= v < 1, "in [0, 1) (0 = shared)")),
    "global_weight": Option("weight of the optional global NT-Xent term", readers=("ideal-pretrain",),
                            limit=_NON_NEGATIVE),
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
    "threads": Option("torch CPU threads (0 = torch's default)", limit=(lambda v: v >= 0, ">= 0 (0 = default)")),
    "sync_bn": Option("under torchrun on CUDA, BatchNorm statistics over the global batch (SyncBatchNorm), so that "
                      "N processes train as one; CPU processes keep their own (PyTorch's needs a GPU)"),
}
FROM_DATASET = ("num_classes", "classes", "normalization", "spacing_mm")


def method_names() -> list[str]:
    """The methods' names, from the files of `idealseg/methods/` (one file a method, `ideal_pretrain.py`
    is `ideal-pretrain`), so that `--help` can list them without importing torch."""
    folder = Path(__file__).parent / "methods"
    helpers = ("__init__", "base", "common", "paste")
    return sorted(p.stem.replace("_", "-") for p in folder.glob("*.py") if p.stem not in helpers)


def reads(option: str, stage: str, method: str) -> bool:
    """Whether a run of `stage` with `method` reads `option` (an unknown name: yes, so that `update` names it)."""
    readers = OPTIONS[option].readers if option in OPTIONS else ()
    return not readers or stage in readers or method in readers


def _checked(key: str, annotation: str, value: Any, source: str) -> Any:
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
        raise IdealsegError(f"{source}: unknown method {value!r}; expected one of {method_names()}")
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


def options_markdown() -> str:
    """docs/options.md: every option with its default, type, choices or range and readers, from OPTIONS.

    The committed page is this function's output (a test compares them); regenerate it with
    `python -c "from idealseg.config import options_markdown; print(options_markdown(), end='')" > docs/options.md`.
    """
    defaults = RunConfig()
    lines = ["# Options", "",
             "Every option of a run, settable in a `--config` YAML by its name and on the command line as",
             "`--name-with-dashes` (except those set from the dataset or by the command). Profiles (`cpu`, `gpu`,",
             "`demo`, `tiny`) change some defaults; an option the chosen method does not read is warned about.",
             "Generated from `idealseg.config.OPTIONS`.", "",
             "The cpu column gives the `cpu` profile's value (fine-tuning / pre-training) where it sets one.", "",
             "| option | default | cpu | allowed | read by | what it does |", "|---|---|---|---|---|---|"]
    for f in fields(RunConfig):
        option = OPTIONS[f.name]
        value = getattr(defaults, f.name)
        default = ",".join(map(str, value)) if isinstance(value, tuple) else value
        allowed = ", ".join(option.choices) if option.choices else option.limit[1] if option.limit else str(f.type)
        allowed = allowed.replace(" | None", " or none")
        readers = ", ".join(option.readers) or "every run"
        flag = option.cli or f.name in ("method", "profile")  # these two are flags of their own
        help_text = option.help + ("" if flag else " (not a flag)")
        shown = f"`{default}`" if default not in ("", ()) else "(empty)"
        cpu = [PROFILES["cpu"][stage].get(f.name) for stage in ("finetune", "pretrain")]
        cpu_text = " / ".join("-" if v is None else f"`{v}`" for v in cpu) if any(v is not None for v in cpu) else ""
        lines.append(f"| `{f.name}` | {shown} | {cpu_text} | {allowed} | {readers} | {help_text} |")
    return "\n".join(lines) + "\n"
