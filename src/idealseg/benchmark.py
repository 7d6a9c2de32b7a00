"""`benchmark`: methods x label budgets x seeds on one dataset and profile, at equal budget.

Cells run one after another and are resumable: a cell whose evaluation summary exists is
skipped, an interrupted one resumes from its last checkpoint. One pre-training serves every
cell that names the same pre-training, but each cell's reported time counts the pre-training
it used; with `equal_budget`, cells without pre-training get its time added to fine-tuning.

With a `budget` entry, seconds become iterations through a calibration (seconds per step of each
method, measured once and kept in calibration.json), so that the comparison is equal in compute
and does not depend on what else the machine was doing while a cell ran. `budget.calibration` names
another run's calibration.json to start from (the same seconds per step, a longer budget).
"""

from __future__ import annotations

import csv
import datetime
import json
import platform
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from idealseg.atomic import atomic_file
from idealseg.config import PROFILES, read_yaml, resolve_config
from idealseg.errors import IdealsegError
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.methods import get_method
from idealseg.pipeline import run_stage

REQUIRED = ("dataset", "methods", "labeled")


def load_benchmark(path: str | Path) -> dict[str, Any]:
    """Read and check a benchmark YAML (see benchmarks/acdc_cpu.yaml)."""
    spec = read_yaml(path)
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise IdealsegError(f"{path}: missing {missing}")
    spec.setdefault("profile", "cpu")
    spec.setdefault("seeds", [0])
    spec.setdefault("split", "val")
    spec.setdefault("equal_budget", True)
    spec.setdefault("options", {})
    if spec["profile"] not in PROFILES:
        raise IdealsegError(f"{path}: unknown profile {spec['profile']!r}")
    if not isinstance(spec["methods"], list) or not all(isinstance(c, dict) for c in spec["methods"]):
        raise IdealsegError(f"{path}: methods must be a list of {{name: ..., method: ...}} entries")
    if not isinstance(spec["labeled"], list) or not spec["labeled"]:
        raise IdealsegError(f"{path}: labeled must be a list of label budgets, e.g. [ssl4mis:7, ssl4mis:3]; "
                            f"got {spec['labeled']!r}")
    for cell in spec["methods"]:
        if "name" not in cell or "method" not in cell:
            raise IdealsegError(f"{path}: each entry of methods needs a name and a method")
        seeds = cell.setdefault("seeds", spec["seeds"])  # a method may add seeds to measure their spread
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            raise IdealsegError(f"{path}: seeds of {cell['name']!r} must be a list of integers, got {seeds!r}")
        _check_cell(path, spec, cell)
    if "budget" in spec:
        _check_budget(path, spec["budget"], any(cell.get("pretrain") for cell in spec["methods"]))
    names = [cell["name"] for cell in spec["methods"]]
    slugs: dict[str, str] = {}
    for name in names:  # cells live in folders named by the slug: two names, one folder, one cell reported twice
        other = slugs.setdefault(_slug(str(name)), str(name))
        if other != name or names.count(name) > 1:
            raise IdealsegError(f"{path}: method names {other!r} and {name!r} share the results folder "
                                f"{_slug(str(name))!r}; give them names that differ in letters or digits")
    if spec.get("reference") and spec["reference"] not in names:
        raise IdealsegError(f"{path}: reference {spec['reference']!r} is not one of the methods {names}")
    spec["labeled"] = [str(b) for b in spec["labeled"]]
    return spec


def _check_cell(path: str | Path, spec: dict, cell: dict) -> None:
    """Resolve a cell's configurations now, so that a typo fails here and not hours into the matrix."""
    stages = [("finetune", cell["method"], cell.get("options", {}))]
    if cell.get("pretrain"):
        stages.insert(0, ("pretrain", cell["pretrain"], cell.get("pretrain_options", {})))
    for stage, method, opts in stages:
        if not isinstance(opts, dict):
            raise IdealsegError(f"{path}: options of {cell['name']!r} must be a mapping, got {opts!r}")
        try:
            get_method(method, stage)
            resolve_config(stage, spec["profile"], None, {**spec["options"], **opts, "method": method})
        except IdealsegError as exc:
            raise IdealsegError(f"{path}: method {cell['name']!r}: {exc}") from None


def _check_budget(path: str | Path, budget: Any, pretraining: bool) -> None:
    """`budget: {total_seconds, pretrain_seconds, calibrate_steps, calibration}`, each sensible."""
    if not isinstance(budget, dict) or set(budget) - {"total_seconds", "pretrain_seconds", "calibrate_steps",
                                                      "calibration"}:
        raise IdealsegError(f"{path}: budget must map total_seconds, pretrain_seconds, calibrate_steps, calibration; "
                            f"got {budget!r}")

    def number(key: str) -> float:
        value = budget.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise IdealsegError(f"{path}: budget.{key} must be a number of seconds >= 0, got {value!r}")
        return value

    total = number("total_seconds")
    if pretraining and not number("pretrain_seconds") < total:
        raise IdealsegError(f"{path}: budget.pretrain_seconds ({budget['pretrain_seconds']}) leaves no fine-tuning "
                            f"within total_seconds ({total})")
    steps = budget.get("calibrate_steps", 20)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise IdealsegError(f"{path}: budget.calibrate_steps must be a whole number >= 1, got {steps!r}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def _pretrain_key(cell: dict) -> str | None:
    if not cell.get("pretrain"):
        return None
    opts = cell.get("pretrain_options", {})
    return _slug(cell["pretrain"] + "".join(f"_{k}-{v}" for k, v in sorted(opts.items())))


def run_benchmark(path: str | Path, out: str | Path | None = None, only: list[str] | None = None,
                  report_only: bool = False, seeds: list[int] | None = None) -> Path:
    """Run the cells of `path` not yet finished (those of `only` methods and `seeds`, when given)."""
    spec = load_benchmark(path)
    root = Path(out or spec.get("out") or Path(path).with_suffix(""))
    root.mkdir(parents=True, exist_ok=True)
    if report_only:
        write_results(root, spec)
        return root
    if spec.get("prepare") and not (Path(spec["dataset"]) / "dataset.json").exists():
        from idealseg.data.prepare import prepare

        source, *src = str(spec["prepare"]).split()
        prepare(source, spec["dataset"], src[0] if src else None)
    profile, options = spec["profile"], dict(spec["options"])
    pre_budget = PROFILES[profile]["pretrain"].get("time_budget", 0)
    unknown = sorted(set(only or ()) - {c["name"] for c in spec["methods"]})
    if unknown:
        names = ", ".join(c["name"] for c in spec["methods"])
        raise IdealsegError(f"--only {','.join(unknown)}: not a method of {path} (its methods: {names})")
    cells = [c for c in spec["methods"] if not only or c["name"] in only]
    if spec.get("budget"):
        calibrate(root, spec, spec["methods"])  # all at once, ideally on a quiet machine
    for labeled in spec["labeled"]:
        for cell in cells:
            for seed in [s for s in cell["seeds"] if seeds is None or s in seeds]:
                _run_cell(root, spec, cell, labeled, seed, profile, options, pre_budget)
                write_results(root, spec)  # the report is current after every cell
    return root


def _stage_key(stage: str, method: str, opts: dict) -> str:
    return _slug(f"{stage}:{method}" + "".join(f"_{k}-{v}" for k, v in sorted(opts.items())))


def calibrate(root: Path, spec: dict, cells: list[dict]) -> dict[str, float]:
    """Seconds per training step of each (stage, method, options) in `cells`, measured once.

    A method added to a benchmark whose table was measured earlier, perhaps on another machine, is
    measured here beside one method already in the table (the anchor), and its entry is scaled by
    the anchor's old/new ratio: its steps then stand in the same proportion to the other methods'
    as if it had been in the first calibration, whatever CPU this one is.
    """
    path = root / "calibration.json"
    table = json.loads(path.read_text()) if path.exists() else _shared_calibration(spec)
    jobs = []
    for cell in cells:
        if cell.get("pretrain"):
            jobs.append(("pretrain", cell["pretrain"], cell.get("pretrain_options", {})))
        jobs.append(("finetune", cell["method"], cell.get("options", {})))
    missing = list({key: job for key, job in map(_job_key, jobs) if key not in table}.items())
    known = [job for job in map(_job_key, jobs) if job[0] in table]
    anchor = next((job for job in known if job[1][0] == "finetune"), known[0] if known else None)
    scale = table[anchor[0]] / _seconds_per_step(root, spec, *anchor[1]) if missing and anchor else 1.0
    for key, job in missing:
        table[key] = _seconds_per_step(root, spec, *job) * scale
        _write_calibration(path, table)
    if not path.exists():
        _write_calibration(path, table)  # every entry came from budget.calibration
    return table


def _job_key(job: tuple) -> tuple[str, tuple]:
    return _stage_key(*job), job


def _seconds_per_step(root: Path, spec: dict, stage: str, method: str, opts: dict) -> float:
    """A short run of one stage on this machine; the first steps, which warm caches up, are not counted."""
    steps = int(spec["budget"].get("calibrate_steps", 20))
    tmp = Path(tempfile.mkdtemp(prefix="calibrate-", dir=root))
    try:
        run_stage(stage, spec["dataset"], tmp / "run", profile=spec["profile"], method=method,
                  **{**spec["options"], **opts, "iterations": steps + 5, "time_budget": 0, "log_every": 5,
                     "checkpoint_every": 10**9, **({"val_every": 0, "labeled": spec["labeled"][0]}
                                                  if stage == "finetune" else {})})
        with open(tmp / "run" / "log.csv", newline="") as f:
            times = {int(r["step"]): float(r["time"]) for r in csv.DictReader(f)}
        return (times[steps + 5] - times[5]) / steps
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_calibration(path: Path, table: dict[str, float]) -> None:
    with atomic_file(path) as f:
        json.dump(table, f, indent=1)


def _shared_calibration(spec: dict) -> dict[str, float]:
    """The table named by `budget: {calibration: FILE}`: another benchmark's seconds per step, so that a
    longer-budget run of the same methods gets steps in proportion to the first one's, not a new measurement."""
    source = spec["budget"].get("calibration")
    if not source:
        return {}
    try:
        table = json.loads(Path(source).read_text())
    except (OSError, ValueError) as e:
        raise IdealsegError(f"{source}: cannot read the calibration named by budget.calibration ({e})") from e
    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in table.values()):
        raise IdealsegError(f"{source}: a calibration maps each stage to positive seconds per step")
    return table


def _iterations(root: Path, stage: str, method: str, opts: dict, seconds: float) -> int:
    table = json.loads((root / "calibration.json").read_text())
    return max(1, int(seconds / table[_stage_key(stage, method, opts)]))


def _cell_dir(root: Path, name: str, labeled: str, seed: int) -> Path:
    return root / "cells" / _slug(f"{name}_{labeled}_seed{seed}")


def _run_cell(root, spec, cell, labeled, seed, profile, options, pre_budget) -> None:
    cell_dir = _cell_dir(root, cell["name"], labeled, seed)
    if (cell_dir / "result.json").exists():
        return
    budget = spec.get("budget")
    pre_seconds, init = 0.0, None
    key = _pretrain_key(cell)
    if key:
        pre_dir = root / "pretrain" / f"{key}_seed{seed}"
        pre_opts = {**options, **cell.get("pretrain_options", {})}
        if budget:
            pre_opts.update(time_budget=0, iterations=_iterations(
                root, "pretrain", cell["pretrain"], cell.get("pretrain_options", {}), budget["pretrain_seconds"]))
        if not (pre_dir / "summary.json").exists():
            run_stage("pretrain", spec["dataset"], pre_dir, profile=profile, resume=True, seed=seed,
                      method=cell["pretrain"], **pre_opts)
        pre_seconds = json.loads((pre_dir / "summary.json").read_text())["seconds"]
        init = str(pre_dir)
    ft_opts = {**options, **cell.get("options", {})}
    if budget:
        ft_seconds = budget["total_seconds"] - (budget["pretrain_seconds"] if key else 0)
        ft_opts.update(time_budget=0, iterations=_iterations(root, "finetune", cell["method"],
                                                             cell.get("options", {}), ft_seconds))
    elif spec["equal_budget"] and not key and PROFILES[profile]["finetune"].get("time_budget"):
        ft_opts["time_budget"] = PROFILES[profile]["finetune"]["time_budget"] + pre_budget
    ft_dir = cell_dir / "run"
    if not (ft_dir / "summary.json").exists():
        run_stage("finetune", spec["dataset"], ft_dir, profile=profile, resume=True, seed=seed, labeled=labeled,
                  method=cell["method"], init=init, **ft_opts)
    train = json.loads((ft_dir / "summary.json").read_text())
    ev = evaluate_run(ft_dir, spec["split"])
    result = {
        "name": cell["name"], "method": cell["method"], "pretrain": cell.get("pretrain"), "labeled": labeled,
        "seed": seed, "profile": profile, "split": spec["split"], "steps": train["steps"],
        "pretrain_seconds": pre_seconds, "finetune_seconds": train["seconds"],
        "train_seconds": round(pre_seconds + train["seconds"], 1), "eval_seconds": ev["seconds"],
        "budget_seconds": budget["total_seconds"] if budget else None,
        "unit": ev["unit"], "metrics": ev["classes"], "machine": machine(), "finished": _now(),
    }
    with atomic_file(cell_dir / "result.json") as f:
        json.dump(result, f, indent=1)


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def collect(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "cells").glob("*/result.json"))]


def write_results(root: Path, spec: dict) -> None:
    """results.csv (one row per cell) and report.md (methods x budgets, Dice and HD95)."""
    results = collect(root)
    if not results:
        return
    rows = []
    for r in results:
        row = {k: r.get(k) for k in ("name", "method", "pretrain", "labeled", "seed", "profile", "split", "steps",
                                     "budget_seconds", "pretrain_seconds", "finetune_seconds", "train_seconds",
                                     "unit", "machine", "finished")}
        for cls, stats in r["metrics"].items():
            for m, v in stats.items():
                row[f"{cls}_{m}"] = v["mean"]
        rows.append(row)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_file(root / "results.csv") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_file(root / "report.md") as f:
        f.write(report_markdown([{**r, "dice": volume_dice(root, r)} for r in results], spec))
    try:
        from idealseg.evaluation.figures import dice_vs_compute, dice_vs_labels

        dice_vs_labels(results, root / "dice_vs_labels.png")
        curves = validation_curves(root, spec, results)
        if any(c["minutes"] for c in curves):
            dice_vs_compute(curves, root / "dice_vs_compute.png")
    except ImportError:
        pass


def validation_curves(root: Path, spec: dict, results: list[dict]) -> list[dict]:
    """Each cell's validation Dice against the training compute spent to reach it, pre-training included.

    A final number hides whether a method was still climbing when its budget ran out; at equal
    compute, a method with a dearer step (two decoders, an unlabelled batch) stops earlier.
    With a calibrated `budget` the x axis is calibrated compute, otherwise measured seconds.
    """
    budget = spec.get("budget")
    curves = []
    for r in results:
        log = _cell_dir(root, r["name"], r["labeled"], r["seed"]) / "run" / "log.csv"
        if not log.exists():
            continue
        with open(log, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("val_dice")]
        if budget:
            pre = budget["pretrain_seconds"] if r.get("pretrain") else 0.0
            per_step = (budget["total_seconds"] - pre) / max(1, r["steps"])
            seconds = [pre + int(row["step"]) * per_step for row in rows]
        else:
            seconds = [r["pretrain_seconds"] + float(row["time"]) for row in rows]
        curves.append({"name": r["name"], "labeled": r["labeled"], "seed": r["seed"],
                       "minutes": [t / 60 for t in seconds], "dice": [float(row["val_dice"]) for row in rows]})
    order = [c["name"] for c in spec["methods"]]
    return sorted(curves, key=lambda c: (_index(spec["labeled"], c["labeled"]), _index(order, c["name"]), c["seed"]))


def _index(items: list, item) -> int:
    """Position in the config (the order the reader set), unknown entries last."""
    return items.index(item) if item in items else len(items)


def report_markdown(results: list[dict], spec: dict) -> str:
    budgets = [b for b in spec["labeled"] if any(r["labeled"] == b for r in results)]
    names = [c["name"] for c in spec["methods"] if any(r["name"] == c["name"] for r in results)]
    unit = results[0]["unit"]
    budget = spec.get("budget")
    how = (f"each cell {_duration(budget['total_seconds'])} of calibrated training compute, pre-training included"
           if budget else "each cell the profile's wall-clock budget")
    lines = [f"Mean foreground Dice / HD95 ({unit}) on the {spec['split']} split, profile {spec['profile']}, "
             f"mean over seeds (± their standard deviation where a cell has several); {how}. "
             "Steps and measured seconds per cell: results.csv.", "",
             *_table_header(budgets)]
    for name in names:
        cells = []
        for b in budgets:
            rs = [r for r in results if r["name"] == name and r["labeled"] == b]
            if not rs:
                cells.append("-")
                continue
            dices = np.array([r["metrics"]["mean"]["dice"]["mean"] for r in rs])
            hds = [r["metrics"]["mean"]["hd95"]["mean"] for r in rs if r["metrics"]["mean"]["hd95"]["mean"] is not None]
            hd = f"{sum(hds) / len(hds):.2f}" if hds else "n/a"
            spread = f" (± {dices.std(ddof=1):.3f}, {len(rs)} seeds)" if len(rs) > 1 else ""
            cells.append(f"{dices.mean():.3f}{spread} / {hd}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += paired_table(results, spec, budgets, names)
    machines = sorted({r["machine"] for r in results})
    # a shared pre-training is counted once (cells that used the same run recorded the same seconds)
    pretrain = {(r["pretrain"], r["seed"], r["pretrain_seconds"]) for r in results if r.get("pretrain")}
    wall = sum(r["finetune_seconds"] + r.get("eval_seconds", 0) for r in results) + sum(p[2] for p in pretrain)
    lines += ["", f"Machine: {'; '.join(machines)}. Measured wall time of these {len(results)} cells: "
              f"{wall / 3600:.1f} h (training and evaluation; each shared pre-training once). Per-class numbers: "
              "results.csv. Validation Dice against training compute, pre-training included: dice_vs_compute.png."]
    return "\n".join(lines) + "\n"


def _table_header(budgets: list[str]) -> list[str]:
    return ["| method | " + " | ".join(f"{b} labelled" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]


def volume_dice(root: Path, result: dict) -> dict[str, float]:
    """Mean foreground Dice of each volume a cell was evaluated on, from its per_volume.csv."""
    path = _cell_dir(root, result["name"], result["labeled"], result["seed"]) / "run"
    path = path / f"eval_{result['split']}" / "per_volume.csv"
    if not path.exists():
        return {}
    by_case: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by_case.setdefault(row["case"], []).append(float(row["dice"]))
    return {case: float(np.nanmean(v)) for case, v in by_case.items()}


def paired_table(results: list[dict], spec: dict, budgets: list[str], names: list[str]) -> list[str]:
    """Each method's mean Dice minus the reference method's, paired over the same volumes and seeds.

    Two methods scored on the same 20 volumes differ much less from volume to volume than either
    does on its own, so the paired standard error says which gaps in the table are more than the
    volumes' spread (it cannot say how much a different training seed would move a cell).
    """
    reference = spec.get("reference") or next((c["name"] for c in spec["methods"] if c["method"] == "ideal"), None)
    if reference not in names or not all("dice" in r for r in results):
        return []
    lines = ["", f"Mean Dice minus {reference}'s, paired over the same volumes and seeds: mean ± standard error "
             "(n pairs).", "", *_table_header(budgets)]
    dice = {(r["name"], r["labeled"], r["seed"]): r["dice"] for r in results}
    for name in names:
        if name == reference:
            continue
        cells = []
        for b in budgets:
            diffs = []
            for seed in {s for n, lab, s in dice if n == name and lab == b}:
                own, ref = dice[(name, b, seed)], dice.get((reference, b, seed), {})
                diffs += [own[case] - ref[case] for case in own if case in ref]
            d = np.array(diffs)
            cells.append(f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f} ({len(d)})" if len(d) > 1 else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _duration(seconds: float) -> str:
    """'28 min' for a CPU budget, '100 s' for a short GPU one (rounding 100 s to '2 min' misleads)."""
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds:.0f} s"
