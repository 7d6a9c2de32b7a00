"""Seconds per training step of each method, measured once, so budgets in seconds become iterations."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

from idealseg.atomic import atomic_file
from idealseg.benchmark.pricing import SAME_COST, phase_jobs
from idealseg.benchmark.spec import BenchmarkSpec, MethodEntry, pretrain_key, stage_key, stage_options
from idealseg.checks import is_number
from idealseg.errors import IdealsegError
from idealseg.pipeline import run_stage


def calibrate(root: Path, spec: BenchmarkSpec, entries: list[MethodEntry]) -> dict[str, float]:
    """Seconds per training step of each (stage, method, options) of the rows `entries`, measured once.

    A method added to a benchmark whose table was measured earlier, perhaps on another machine, is
    measured here beside one method already in the table (the anchor), and its entry is scaled by
    the anchor's old/new ratio: its steps then stand in the same proportion to the other methods'
    as if it had been in the first calibration, whatever CPU this one is. A variant (a method with
    options) whose plain method is in the table is anchored on that method: an option that does
    not change the step's arithmetic (a learning rate) then gets the plain method's steps, within
    the measurement's noise, even when no cell of this benchmark runs the plain method. A variant
    whose options only change numbers inside the step (SAME_COST: a learning rate, a loss weight, a
    threshold) takes the plain method's cost as it is, also over an entry measured before this rule:
    on a shared machine two 20-step measurements of the same BCP step differed by up to 28 %, and
    IDEAL's lambda and ramp-up variants came out 0.68 to 0.88 s against IDEAL's 0.77.

    A method whose run has parts of different cost (`pricing.run_parts`: BCP's labelled-only warm-up) has
    each part measured as a variant of the plain method, and `iterations` prices a run by their mix.
    Entries this benchmark's own table lacks are first taken from `budget.calibration`'s, so that
    benchmarks sharing a calibration share later measurements too.
    """
    path = root / "calibration.json"
    shared = _shared_calibration(spec)
    own = read_calibration(path) if path.exists() else None
    table = shared if own is None else {**shared, **own}
    if own is not None and set(shared) - set(own):
        _write_calibration(path, table)  # entries the shared table gained later (BCP's parts) are its own
    jobs = []
    for entry in entries:
        if entry.pretrain:
            jobs.append(("pretrain", entry.pretrain, entry.pretrain_options))
        run_options = stage_options(spec, entry, "finetune")
        jobs += [job for _, job in phase_jobs("finetune", entry.method, entry.options, run_options)]
    for key, job in map(_job_key, jobs):
        plain = stage_key(job[0], job[1], {})
        if job[2] and set(job[2]) <= SAME_COST and plain in table and table.get(key) != table[plain]:
            table[key] = table[plain]
            _write_calibration(path, table)
    missing = list({key: job for key, job in map(_job_key, jobs) if key not in table}.items())
    known = [job for job in map(_job_key, jobs) if job[0] in table]
    anchor = next((job for job in known if job[1][0] == "finetune"), known[0] if known else None)
    measured: dict[str, float] = {}  # each stage measured at most once, the anchor only if needed

    def here(job: tuple) -> float:
        key = stage_key(*job)
        if key not in measured:
            measured[key] = _seconds_per_step(root, spec, *job)
        return measured[key]

    for key, job in missing:
        plain = stage_key(job[0], job[1], {})
        if job[2] and plain in table:  # a variant: anchored on its plain method
            table[key] = table[plain] * here(job) / here((job[0], job[1], {}))
        else:
            table[key] = here(job) * (table[anchor[0]] / here(anchor[1]) if anchor else 1.0)
        _write_calibration(path, table)
    if not path.exists():
        _write_calibration(path, table)  # every entry came from budget.calibration
    return table

def finetune_steps(root: Path, spec: BenchmarkSpec, entry: MethodEntry) -> int:
    """The fine-tuning steps the budget buys a cell of the row `entry`: the total less its pre-training's
    share, priced by the calibration."""
    budget = spec.budget
    seconds = budget.total_seconds - (budget.pretrain_seconds if pretrain_key(entry) else 0)
    return iterations(root, "finetune", entry.method, entry.options, seconds, stage_options(spec, entry, "finetune"))

def compute_spent(root: Path, stage: str, method: str, opts: dict, run_options: dict, total: int,
                  steps: list[int]) -> list[float] | None:
    """Calibrated seconds a run of `total` steps has spent after each of `steps`, its parts taken in
    order and each priced at its own cost (BCP's cheap warm-up first). None for a run of one part (its
    budget spreads evenly over its steps) and where the table lacks a part's cost."""
    parts = phase_jobs(stage, method, opts, run_options)
    path = root / "calibration.json"
    if len(parts) == 1 or not path.exists():
        return None
    table = read_calibration(path)
    costs = [table.get(stage_key(*job)) for _, job in parts]
    if None in costs:
        return None
    spent = []
    for step in steps:
        start, seconds = 0.0, 0.0
        for (fraction, _), cost in zip(parts, costs, strict=True):
            seconds += min(max(step - start, 0.0), fraction * total) * cost
            start += fraction * total
        spent.append(seconds)
    return spent

def _job_key(job: tuple) -> tuple[str, tuple]:
    return stage_key(*job), job

def _seconds_per_step(root: Path, spec: BenchmarkSpec, stage: str, method: str, opts: dict) -> float:
    """A short run of one stage on this machine; the first steps, which warm caches up, are not counted."""
    steps = int(spec.budget.calibrate_steps)
    tmp = Path(tempfile.mkdtemp(prefix="calibrate-", dir=root))
    row = MethodEntry(name=method, method=method, seeds=[], options=opts, pretrain_options=opts)
    base = stage_options(spec, row, stage)  # as the cell will run
    try:
        run_stage(stage, spec.dataset, tmp / "run", profile=spec.profile, method=method,
                  **{**base, "iterations": steps + 5, "time_budget": 0, "log_every": 5,
                     "checkpoint_every": 10**9, **({"val_every": 0, "labeled": spec.labeled[0]}
                                                  if stage == "finetune" else {})})
        with open(tmp / "run" / "log.csv", newline="") as f:
            times = {int(r["step"]): float(r["time"]) for r in csv.DictReader(f)}
        return (times[steps + 5] - times[5]) / steps
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

def _write_calibration(path: Path, table: dict[str, float]) -> None:
    with atomic_file(path) as f:
        json.dump(table, f, indent=1)

def _shared_calibration(spec: BenchmarkSpec) -> dict[str, float]:
    """The table named by `budget: {calibration: FILE}`: another benchmark's seconds per step, so that a
    longer-budget run of the same methods gets steps in proportion to the first one's, not a new measurement."""
    source = spec.budget.calibration
    if not source:
        return {}
    return read_calibration(Path(source), "the calibration named by budget.calibration")


def read_calibration(path: Path, what: str = "calibration.json") -> dict[str, float]:
    """A calibration table, checked as it is read: one edited by hand (a cost typed as text, a null, 0)
    would otherwise fail as a division deep inside a benchmark, or buy a cell endless steps."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise IdealsegError(f"{path}: cannot read {what} ({e})") from e
    if not isinstance(table, dict) or not all(is_number(v) and v > 0 for v in table.values()):
        raise IdealsegError(f"{path}: a calibration maps each stage to positive seconds per step")
    return table

def iterations(root: Path, stage: str, method: str, opts: dict, seconds: float,
               run_options: dict | None = None) -> int:
    """Steps that `seconds` of compute buy a stage on the calibrated machine (at least 1), each part of
    the run (`phase_jobs`, sized by `run_options`, by default `opts`) priced at its own cost."""
    table = read_calibration(root / "calibration.json")
    parts = phase_jobs(stage, method, opts, opts if run_options is None else run_options)
    return max(1, int(seconds / sum(fraction * table[stage_key(*job)] for fraction, job in parts)))
