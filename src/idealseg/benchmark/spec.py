"""The benchmark YAML: read it and check every cell's configuration before anything runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from idealseg.checks import SEED_MAX, SEED_RANGE, is_number, is_whole
from idealseg.config import PROFILES, read_yaml, reads, resolve_config
from idealseg.data.budgets import SSL4MIS_SLICES
from idealseg.data.dataset import SPLITS
from idealseg.errors import IdealsegError
from idealseg.methods import METHODS, get_method

REQUIRED = ("dataset", "methods", "labeled")

def load_benchmark(path: str | Path) -> dict[str, Any]:
    """Read and check a benchmark YAML (see benchmarks/configs/acdc_cpu.yaml)."""
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
    _check_entries(path, spec)
    for cell in spec["methods"]:
        if "name" not in cell or "method" not in cell:
            raise IdealsegError(f"{path}: each entry of methods needs a name and a method")
        seeds = cell.setdefault("seeds", spec["seeds"])  # a method may add seeds to measure their spread
        if not isinstance(seeds, list) or not seeds or not all(is_whole(s) and 0 <= s <= SEED_MAX for s in seeds):
            raise IdealsegError(f"{path}: seeds of {cell['name']!r} must be a list of integers, got {seeds!r} "
                                f"(each seed {SEED_RANGE})")
        _check_cell(path, spec, cell)
    if "budget" in spec:
        _check_budget(path, spec["budget"], any(cell.get("pretrain") for cell in spec["methods"]))
    names = [cell["name"] for cell in spec["methods"]]
    slugs: dict[str, str] = {}
    for name in names:  # cells live in folders named by the slug: two names, one folder, one cell reported twice
        other = slugs.setdefault(slug(str(name)), str(name))
        if other != name or names.count(name) > 1:
            raise IdealsegError(f"{path}: method names {other!r} and {name!r} share the results folder "
                                f"{slug(str(name))!r}; give them names that differ in letters or digits")
    if spec.get("reference") and spec["reference"] not in names:
        raise IdealsegError(f"{path}: reference {spec['reference']!r} is not one of the methods {names}")
    spec["labeled"] = [str(b) for b in spec["labeled"]]
    return spec

def _check_cell(path: str | Path, spec: dict, cell: dict) -> None:
    """Resolve a cell's configurations now, so that a typo fails here and not hours into the matrix."""
    for key in ("options", "pretrain_options"):
        if not isinstance(cell.get(key, {}), dict):
            raise IdealsegError(f"{path}: {key} of {cell['name']!r} must be a mapping, got {cell[key]!r}")
        _check_option_names(path, f"{key} of {cell['name']!r}", cell.get(key, {}))
    stages = [("finetune", cell["method"])] + ([("pretrain", cell["pretrain"])] if cell.get("pretrain") else [])
    for stage, method in stages:
        try:
            get_method(method, stage)
            resolve_config(stage, spec["profile"], None, {**stage_options(spec, cell, stage), "method": method},
                           source=f"{stage} options")
        except IdealsegError as exc:
            raise IdealsegError(f"{path}: method {cell['name']!r}: {exc}") from None

# Set per cell by the benchmark itself (its seeds, label budgets, methods and pre-training), never by options.
PER_CELL = {"seed": "seeds:", "labeled": "labeled:", "method": "methods:", "init": "a method's pretrain:",
            "profile": "profile:", "dataset": "dataset:", "stage": "methods:"}


def _check_option_names(path: str | Path, where: str, options: dict) -> None:
    for name in options:
        if str(name).replace("-", "_") in PER_CELL:
            raise IdealsegError(f"{path}: {where}: {name!r} is set per cell by the benchmark; "
                                f"use {PER_CELL[str(name).replace('-', '_')]} instead")


def stage_options(spec: dict, cell: dict, stage: str) -> dict[str, Any]:
    """The options a cell's stage runs with, before the budget's iterations: the benchmark's `options`,
    then `finetune_options` (fine-tuning only, so that pre-training keeps its profile's optimiser), then
    the cell's own `options` or `pretrain_options`."""
    if stage == "pretrain":
        return {**spec["options"], **cell.get("pretrain_options", {})}
    return {**spec["options"], **spec["finetune_options"], **cell.get("options", {})}

def clocked_options(spec: dict, cell: dict, stage: str) -> dict[str, Any]:
    """A cell's stage options where the benchmark has no calibrated `budget`, with the profile's clock
    and step limit made explicit. With `equal_budget`, a cell without pre-training adds the profile's
    pre-training time to its fine-tuning clock, so that it trains as long as a pre-trained cell; a
    stage with no clock (`time_budget: 0`, equal steps) gets none, since there is no time to equal."""
    opts = {**PROFILES[spec["profile"]][stage], **stage_options(spec, cell, stage)}
    if stage == "finetune" and spec["equal_budget"] and not cell.get("pretrain") and opts.get("time_budget"):
        opts["time_budget"] += PROFILES[spec["profile"]]["pretrain"].get("time_budget", 0)
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

def pretrain_key(cell: dict) -> str | None:
    """The folder name of a cell's pre-training (method and options), shared by cells that name the same."""
    if not cell.get("pretrain"):
        return None
    opts = cell.get("pretrain_options", {})
    return slug(cell["pretrain"] + "".join(f"_{k}-{v}" for k, v in sorted(opts.items())))

def stage_key(stage: str, method: str, opts: dict) -> str:
    """The calibration table's key of a stage, method and options."""
    return slug(f"{stage}:{method}" + "".join(f"_{k}-{v}" for k, v in sorted(opts.items())))

def cell_dir(root: Path, name: str, labeled: str, seed: int) -> Path:
    """The folder of one cell (method name, label budget, seed)."""
    return root / "cells" / slug(f"{name}_{labeled}_seed{seed}")
