"""Running the matrix: one resumable cell after another, each evaluated and recorded in result.json."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch
import yaml

from idealseg.atomic import atomic_file
from idealseg.benchmark.calibration import calibrate, finetune_steps, iterations
from idealseg.benchmark.cell import Cell, CellResult, read_result
from idealseg.benchmark.report import write_results
from idealseg.benchmark.spec import BenchmarkSpec, clocked_options, load_benchmark, pretrain_key, stage_options
from idealseg.errors import IdealsegError
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.ownership import check_not_link, owned, write_manifest
from idealseg.pipeline import run_stage
from idealseg.runfolder.checkpoint import has_checkpoint
from idealseg.runfolder.environment import cpu_model
from idealseg.writer_lock import LOCK


def run_benchmark(path: str | Path, out: str | Path | None = None, only: list[str] | None = None,
                  report_only: bool = False, seeds: list[int] | None = None,
                  labeled: list[str] | None = None) -> Path:
    """Run the cells of `path` not yet finished (those of `only` methods, `seeds` and `labeled`
    budgets, when given)."""
    spec = load_benchmark(path)
    root = Path(out or spec.out or Path(path).with_suffix(""))
    claim_results_folder(root)
    if report_only:
        write_results(root, spec)
        return root
    if spec.prepare and not (Path(spec.dataset) / "dataset.json").exists():
        from idealseg.data.prepare import prepare

        source, *src = str(spec.prepare).split()
        prepare(source, src[0] if src else None, spec.dataset)
    unknown = sorted(set(only or ()) - {e.name for e in spec.methods})
    if unknown:
        names = ", ".join(e.name for e in spec.methods)
        raise IdealsegError(f"--only {','.join(unknown)}: not a method of {path} (its methods: {names})")
    entries = [e for e in spec.methods if not only or e.name in only]
    absent = sorted(set(labeled or ()) - set(spec.labeled))
    if absent:
        raise IdealsegError(f"--labeled {','.join(absent)}: not a budget of {path} "
                            f"(its budgets: {', '.join(spec.labeled)})")
    missing = sorted(set(seeds or ()) - {s for e in entries for s in e.seeds})
    if missing:  # as --only and --labeled: a seed the YAML does not list would silently run nothing
        raise IdealsegError(f"--seeds {','.join(map(str, missing))}: not a seed of {path}'s selected methods "
                            f"(add it to `seeds:`; its seeds: {', '.join(map(str, spec.seeds))})")
    if spec.budget:
        calibrate(root, spec, spec.methods)  # all at once, ideally on a quiet machine
    for column in [b for b in spec.labeled if not labeled or b in labeled]:
        for entry in entries:
            for seed in [s for s in entry.seeds if seeds is None or s in seeds]:
                run_cell(root, spec, Cell(entry, column, seed))
                write_results(root, spec)  # the report is current after every cell
    return root

def claim_results_folder(root: Path) -> None:
    """Make `root` a benchmark's results folder, or accept one: its report.md and results.csv are
    rewritten after every cell, so a folder of the user's (or another kind of idealseg's) is refused."""
    check_not_link(root)
    if root.exists() and any(p.name != LOCK for p in root.iterdir()) and not owned(root, "benchmark"):
        raise IdealsegError(f"{root}: exists and is not an idealseg benchmark's results folder; idealseg "
                            "writes report.md and results.csv there only in a folder of its own: choose a "
                            "new `out:`")
    root.mkdir(parents=True, exist_ok=True)
    if not owned(root, "benchmark"):
        write_manifest(root, "benchmark")


def run_cell(root: Path, spec: BenchmarkSpec, cell: Cell) -> None:
    """Run (or resume) one cell: its pre-training if any, fine-tuning, evaluation, then result.json.

    A cell whose result.json exists is skipped, so the matrix resumes cell by cell; one that ran with
    other steps than its budget buys now (the calibration changed) is kept as it is and named."""
    entry, labeled, seed, profile = cell.entry, cell.labeled, cell.seed, spec.profile
    folder = cell.folder(root)
    budget = spec.budget
    if (folder / "result.json").exists():
        if budget:
            steps = read_result(folder / "result.json").steps
            now = finetune_steps(root, spec, entry)
            if steps != now:
                print(f"{folder}: kept as it ran ({steps} steps; its budget buys {now} now): "
                      "move the folder aside to run it again", flush=True)
        return
    print(f"{folder}: {_how_it_goes_on(folder)} ({entry.name}, {labeled} labelled, seed {seed})", flush=True)
    pre_seconds, init = 0.0, None
    key = pretrain_key(entry)
    if key:
        pre_dir = root / "pretrain" / f"{key}_seed{seed}"
        pre_opts = stage_options(spec, entry, "pretrain")
        if budget:
            pre_opts.update(time_budget=0, iterations=_steps_started(pre_dir, iterations(
                root, "pretrain", entry.pretrain, entry.pretrain_options, budget.pretrain_seconds)))
        finished = (pre_dir / "summary.json").exists()
        if not finished or not (pre_dir / "encoder.pt").exists():
            if finished:
                print(f"{pre_dir}: pre-trains again, same seed and steps (its summary.json is there, its "
                      "encoder.pt is not, as in a results folder committed without its weights)", flush=True)
            run_stage("pretrain", spec.dataset, pre_dir, profile=profile, resume=True, seed=seed,
                      method=entry.pretrain, **pre_opts)
        pre_seconds = json.loads((pre_dir / "summary.json").read_text())["seconds"]
        init = str(pre_dir)
    ft_opts = stage_options(spec, entry, "finetune")
    ft_dir = folder / "run"
    if budget:
        ft_opts.update(time_budget=0, iterations=_steps_started(ft_dir, finetune_steps(root, spec, entry)))
    elif "time_budget" in (clocked := clocked_options(spec, entry, "finetune")):
        ft_opts["time_budget"] = clocked["time_budget"]
    if not (ft_dir / "summary.json").exists():
        run_stage("finetune", spec.dataset, ft_dir, profile=profile, resume=True, seed=seed, labeled=labeled,
                  method=entry.method, init=init, **ft_opts)
    train = json.loads((ft_dir / "summary.json").read_text())
    # as the field reports: no post-processing (the run's own choice stays in its summary.json)
    ev = evaluate_run(ft_dir, spec.split, largest_component=False, scale_search=False)
    result = CellResult(
        name=entry.name, method=entry.method, pretrain=entry.pretrain, labeled=labeled, seed=seed,
        profile=profile, split=spec.split, steps=train["steps"], pretrain_seconds=pre_seconds,
        finetune_seconds=train["seconds"], train_seconds=round(pre_seconds + train["seconds"], 1),
        eval_seconds=ev["seconds"], budget_seconds=budget.total_seconds if budget else None,
        unit=ev["unit"], metrics=ev["classes"], machine=machine(), finished=_now())
    with atomic_file(folder / "result.json") as f:
        json.dump(result.to_json(), f, indent=1)

def _how_it_goes_on(folder: Path) -> str:
    """Say whether a cell picks up where it stopped: a folder copied without its checkpoints (they are
    not committed) holds a log but nothing to resume, and its steps run again from the first."""
    run = folder / "run"
    if (run / "summary.json").exists() or has_checkpoint(run):
        return "resumes"
    return "starts again (its folder holds no checkpoint)" if folder.exists() else "starts"

def _steps_started(run_dir: Path, steps: int) -> int:
    """The steps a stage that has begun keeps (its config.yaml's), whatever its budget buys now: a run
    resumed after the calibration changed would otherwise change its schedule midway (a BCP run could
    fall back from self-training into its warm-up), or stop at once past its new end."""
    config = run_dir / "config.yaml"
    if not config.exists():
        return steps
    started = int(yaml.safe_load(config.read_text())["iterations"])
    if started != steps:
        print(f"{run_dir}: continues with the {started} steps it started with (its budget buys {steps} now)",
              flush=True)
    return started

def machine() -> str:
    """What ran a cell: the GPU's name, or the processor's model and the torch thread count (timings
    compare only on the same model: this project's machines differ up to 3x)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
