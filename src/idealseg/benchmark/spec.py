"""The benchmark YAML, read and checked once at load into typed objects: a typo in any cell's
configuration fails before anything runs, not hours into the matrix, and the code downstream reads
fields it knows are there and of their type."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idealseg.checks import SEED_MAX, SEED_RANGE, is_number, is_whole
from idealseg.config import PROFILES, read_yaml, reads, resolve_config
from idealseg.data.budgets import SSL4MIS_SLICES
from idealseg.data.dataset import SPLITS
from idealseg.errors import IdealsegError
from idealseg.methods import METHODS, get_method

REQUIRED = ("dataset", "methods", "labeled")


@dataclass(frozen=True)
class Budget:
    """`budget:`: seconds of calibrated compute per cell, turned into steps by the calibration.
    Numbers keep the type the YAML gave them (an int stays an int in result.json)."""

    total_seconds: float
    pretrain_seconds: float | None = None  # required where a method has pre-training
    calibrate_steps: int = 20
    calibration: str | None = None  # another benchmark's calibration.json to start from


@dataclass(frozen=True)
class MethodEntry:
    """One row of `methods:`: a method, its options, its optional pre-training, and its seeds (the
    benchmark's `seeds` unless the row adds its own to measure their spread)."""

    name: str
    method: str
    seeds: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    pretrain: str | None = None
    pretrain_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark YAML as checked by `load_benchmark` (see benchmarks/configs/acdc_cpu.yaml)."""

    dataset: str
    methods: list[MethodEntry]
    labeled: list[str]  # label budgets as the CLI spells them: "ssl4mis:7", "10%", "3"
    profile: str = "cpu"
    seeds: list[int] = field(default_factory=lambda: [0])
    split: str = "val"
    equal_budget: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    finetune_options: dict[str, Any] = field(default_factory=dict)  # fine-tuning only
    out: str | None = None
    prepare: str | None = None
    reference: str | None = None
    budget: Budget | None = None

    def entry(self, name: str) -> MethodEntry | None:
        """The row of `methods:` named `name`, None for a name no row has (a cell of a removed row)."""
        return next((m for m in self.methods if m.name == name), None)


def load_benchmark(path: str | Path) -> BenchmarkSpec:
    """Read and check a benchmark YAML (see benchmarks/configs/acdc_cpu.yaml), every error one line naming
    the file and the entry."""
    spec = read_yaml(path)
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise IdealsegError(f"{path}: missing {missing}")
    spec.setdefault("profile", "cpu")
    spec.setdefault("seeds", [0])
    spec.setdefault("split", "val")
    spec.setdefault("equal_budget", True)
    spec.setdefault("options", {})
    spec.setdefault("finetune_options", {})  # fine-tuning only (pre-training keeps its profile's optimiser)
    for key in ("options", "finetune_options"):
        if not isinstance(spec[key], dict):
            raise IdealsegError(f"{path}: {key} must be a mapping of option: value, got {spec[key]!r}")
        _check_option_names(path, key, spec[key])
    tuning = [m for m, method in METHODS.items() if method.stage == "finetune"]
    for name in spec["finetune_options"]:
        if not any(reads(name, "finetune", m) for m in tuning):
            raise IdealsegError(f"{path}: finetune_options: {name!r} is read by pre-training only; "
                                "put it under options or a method's pretrain_options")
    if not isinstance(spec["profile"], str) or spec["profile"] not in PROFILES:
        raise IdealsegError(f"{path}: unknown profile {spec['profile']!r}")
    if not isinstance(spec["methods"], list) or not all(isinstance(c, dict) for c in spec["methods"]):
        raise IdealsegError(f"{path}: methods must be a list of {{name: ..., method: ...}} entries")
    if not isinstance(spec["labeled"], list) or not spec["labeled"]:
        raise IdealsegError(f"{path}: labeled must be a list of label budgets, e.g. [ssl4mis:7, ssl4mis:3]; "
                            f"got {spec['labeled']!r}")
    for column in spec["labeled"]:
        problem = budget_problem(column)
        if problem:
            raise IdealsegError(f"{path}: labeled: {column!r}: {problem}")
    columns = [budget_text(b) for b in spec["labeled"]]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:  # `[2, '2', 2]`: one budget, three identical columns of the same cells
        raise IdealsegError(f"{path}: labeled: {', '.join(twice)} named more than once ({spec['labeled']!r}); "
                            "give each label budget once")
    _check_entries(path, spec)
    entries = []
    for cell in spec["methods"]:
        if "name" not in cell or "method" not in cell:
            raise IdealsegError(f"{path}: each entry of methods needs a name and a method")
        seeds = cell.get("seeds", spec["seeds"])  # a method may add seeds to measure their spread
        if not isinstance(seeds, list) or not seeds or not all(is_whole(s) and 0 <= s <= SEED_MAX for s in seeds):
            raise IdealsegError(f"{path}: seeds of {cell['name']!r} must be a list of integers, got {seeds!r} "
                                f"(each seed {SEED_RANGE})")
        entry = MethodEntry(name=cell["name"], method=cell["method"], seeds=seeds, options=cell.get("options", {}),
                            pretrain=cell.get("pretrain"), pretrain_options=cell.get("pretrain_options", {}))
        _check_cell(path, spec, entry)
        entries.append(entry)
    if "budget" in spec:
        _check_budget(path, spec["budget"], any(entry.pretrain for entry in entries))
    names = [entry.name for entry in entries]
    slugs: dict[str, str] = {}
    for name in names:  # cells live in folders named by the slug: two names, one folder, one cell reported twice
        other = slugs.setdefault(slug(str(name)), str(name))
        if other != name or names.count(name) > 1:
            raise IdealsegError(f"{path}: method names {other!r} and {name!r} share the results folder "
                                f"{slug(str(name))!r}; give them names that differ in letters or digits")
    if spec.get("reference") and spec["reference"] not in names:
        raise IdealsegError(f"{path}: reference {spec['reference']!r} is not one of the methods {names}")
    budget = spec.get("budget")
    return BenchmarkSpec(
        dataset=spec["dataset"], methods=entries, labeled=columns,
        profile=spec["profile"], seeds=spec["seeds"], split=spec["split"], equal_budget=spec["equal_budget"],
        options=spec["options"], finetune_options=spec["finetune_options"], out=spec.get("out"),
        prepare=spec.get("prepare"), reference=spec.get("reference"),
        budget=Budget(**budget) if budget else None)


def _check_cell(path: str | Path, spec: dict[str, Any], entry: MethodEntry) -> None:
    """Resolve a row's configurations now, so that a typo fails here and not hours into the matrix."""
    for key in ("options", "pretrain_options"):
        options = getattr(entry, key)
        if not isinstance(options, dict):
            raise IdealsegError(f"{path}: {key} of {entry.name!r} must be a mapping, got {options!r}")
        _check_option_names(path, f"{key} of {entry.name!r}", options)
    stages = [("finetune", entry.method)] + ([("pretrain", entry.pretrain)] if entry.pretrain else [])
    for stage, method in stages:
        try:
            get_method(method, stage)
            options = _merged(spec["options"], spec["finetune_options"], entry, stage)
            resolve_config(stage, spec["profile"], None, {**options, "method": method}, source=f"{stage} options")
        except IdealsegError as exc:
            raise IdealsegError(f"{path}: method {entry.name!r}: {exc}") from None

# Set per cell by the benchmark itself (its seeds, label budgets, methods and pre-training), never by options.
PER_CELL = {"seed": "seeds:", "labeled": "labeled:", "method": "methods:", "init": "a method's pretrain:",
            "profile": "profile:", "dataset": "dataset:", "stage": "methods:"}


def _check_option_names(path: str | Path, where: str, options: dict) -> None:
    for name in options:
        if str(name).replace("-", "_") in PER_CELL:
            raise IdealsegError(f"{path}: {where}: {name!r} is set per cell by the benchmark; "
                                f"use {PER_CELL[str(name).replace('-', '_')]} instead")


def stage_options(spec: BenchmarkSpec, entry: MethodEntry, stage: str) -> dict[str, Any]:
    """The options a row's stage runs with, before the budget's iterations: the benchmark's `options`,
    then `finetune_options` (fine-tuning only, so that pre-training keeps its profile's optimiser), then
    the row's own `options` or `pretrain_options`."""
    return _merged(spec.options, spec.finetune_options, entry, stage)


def _merged(options: dict[str, Any], finetune_options: dict[str, Any], entry: MethodEntry,
            stage: str) -> dict[str, Any]:
    """`stage_options` from its parts, so that the YAML's check resolves what the cell will run."""
    if stage == "pretrain":
        return {**options, **entry.pretrain_options}
    return {**options, **finetune_options, **entry.options}


def clocked_options(spec: BenchmarkSpec, entry: MethodEntry, stage: str) -> dict[str, Any]:
    """A cell's stage options where the benchmark has no calibrated `budget`, with the profile's clock
    and step limit made explicit. With `equal_budget`, a cell without pre-training adds the pre-training
    clock (the profile's, or the benchmark's `options`) to its fine-tuning clock, so that it trains as
    long as a pre-trained cell; a stage with no clock (`time_budget: 0`, equal steps, every profile's
    default) gets none, since there is no time to equal."""
    opts = {**PROFILES[spec.profile][stage], **stage_options(spec, entry, stage)}
    if stage == "finetune" and spec.equal_budget and not entry.pretrain and opts.get("time_budget"):
        opts["time_budget"] += {**PROFILES[spec.profile]["pretrain"], **spec.options}.get("time_budget", 0)
    return opts

def _check_budget(path: str | Path, budget: Any, pretraining: bool) -> None:
    """`budget: {total_seconds, pretrain_seconds, calibrate_steps, calibration}`, each sensible."""
    if not isinstance(budget, dict) or set(budget) - {"total_seconds", "pretrain_seconds", "calibrate_steps",
                                                      "calibration"}:
        raise IdealsegError(f"{path}: budget must map total_seconds, pretrain_seconds, calibrate_steps, calibration; "
                            f"got {budget!r}")

    def number(key: str) -> float:
        value = budget.get(key)
        if not is_number(value) or value <= 0:  # .inf and .nan are YAML numbers too; 0 s buys no step
            raise IdealsegError(f"{path}: budget.{key} must be a number of seconds, finite and > 0, got {value!r}")
        return value

    total = number("total_seconds")
    if pretraining and not number("pretrain_seconds") < total:
        raise IdealsegError(f"{path}: budget.pretrain_seconds ({budget['pretrain_seconds']}) leaves no fine-tuning "
                            f"within total_seconds ({total})")
    if not pretraining and "pretrain_seconds" in budget:
        number("pretrain_seconds")
    calibration = budget.get("calibration")
    if calibration is not None and (not isinstance(calibration, str) or not calibration.strip()):
        raise IdealsegError(f"{path}: budget.calibration must name a calibration.json file, got {calibration!r}")
    steps = budget.get("calibrate_steps", 20)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise IdealsegError(f"{path}: budget.calibrate_steps must be a whole number >= 1, got {steps!r}")

def _check_entries(path: str | Path, spec: dict) -> None:
    """The YAML's plain entries, each of the type the benchmark reads it as."""
    for key in ("dataset", "out", "prepare", "reference"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise IdealsegError(f"{path}: {key} must be a string, got {spec[key]!r}")
    if spec["split"] not in SPLITS:
        raise IdealsegError(f"{path}: split must be one of {', '.join(SPLITS)}, got {spec['split']!r}")
    if not isinstance(spec["equal_budget"], bool):
        raise IdealsegError(f"{path}: equal_budget must be true or false, got {spec['equal_budget']!r}")


def budget_text(budget: Any) -> str:
    """A label budget as one spelling (`2`, `'2'` and `' 02'` are one budget), checked by budget_problem."""
    text = str(budget).strip()
    return str(int(text)) if text.isdigit() else text


def budget_problem(budget: Any) -> str | None:
    """What is wrong with a label budget's form, known without the dataset (which may not exist yet):
    so that a benchmark refuses `labeled: [0]` before its calibration, not hours later at that column."""
    text = str(budget).strip() if is_whole(budget) or isinstance(budget, str) else None
    if text is None:
        return "a label budget is a count (7), a percentage (10%), ssl4mis:N, all or @file"
    if text == "all" or text.startswith("@"):
        return None
    if text.startswith("ssl4mis:"):
        count = text.split(":", 1)[1]
        ok = count.isdigit() and int(count) in SSL4MIS_SLICES
        return None if ok else f"known SSL4MIS budgets are {sorted(SSL4MIS_SLICES)}"
    number = text[:-1] if text.endswith("%") else text
    try:
        value = float(number) if text.endswith("%") else int(number)
    except ValueError:
        return "a label budget is a count (7), a percentage (10%), ssl4mis:N, all or @file"
    if text.endswith("%"):
        return None if 0 < value <= 100 else "a percentage must be above 0 and up to 100"
    return None if value >= 1 else "at least 1 labelled patient is needed"


def slug(text: str) -> str:
    """A file-system-safe name: runs of anything but letters, digits, dots and dashes become `_`."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")

def pretrain_key(entry: MethodEntry) -> str | None:
    """The folder name of a row's pre-training (method and options), shared by rows that name the same."""
    if not entry.pretrain:
        return None
    opts = entry.pretrain_options
    return slug(entry.pretrain + "".join(f"_{k}-{v}" for k, v in sorted(opts.items())))

def stage_key(stage: str, method: str, opts: dict) -> str:
    """The calibration table's key of a stage, method and options."""
    return slug(f"{stage}:{method}" + "".join(f"_{k}-{v}" for k, v in sorted(opts.items())))

def cell_dir(root: Path, name: str, labeled: str, seed: int) -> Path:
    """The folder of one cell (method name, label budget, seed)."""
    return root / "cells" / slug(f"{name}_{labeled}_seed{seed}")
