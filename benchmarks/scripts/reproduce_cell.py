"""Does a finished benchmark cell reproduce from the code as it is now? Two checks, on the machine that
ran the cell:

- evaluation: the cell's own checkpoint scored again (`evaluate_run`, the cell's split and options)
  against the per-class Dice, HD95 and ASD in its result.json;
- training: the cell's fine-tuning run again from its config.yaml for its first `--steps` steps (the
  schedule is the full run's, so every step is the same step), its log rows against the cell's log.csv.

    python benchmarks/scripts/reproduce_cell.py \\
        benchmarks/results/acdc_cpu_ceiling/cells/supervised_adam_1e-3_all_seed0 \\
        --steps 200 --out benchmarks/results/reproduce

Writes OUT/results.json (per cell: the differences, the CPU model, the seconds) and prints it. Training checks
need the cell's dataset folder where its config.yaml says it is (`idealseg benchmark` prepares it).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from idealseg.atomic import atomic_file
from idealseg.benchmark.cells import claim_results_folder
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.runfolder.environment import cpu_model

METRICS = ("dice", "hd95", "asd")


def evaluation(cell: Path) -> dict:
    """The largest difference between the cell's recorded metrics and a fresh evaluation of its checkpoint."""
    result = json.loads((cell / "result.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        summary = evaluate_run(cell / "run", result["split"], out=Path(tmp) / "eval", device="cpu",
                               largest_component=False)
    worst = 0.0
    for name, recorded in result["metrics"].items():
        for m in METRICS:
            a, b = recorded[m]["mean"], summary["classes"][name][m]["mean"]
            if a is not None and b is not None:
                worst = max(worst, abs(a - b))
    return {"max_abs_difference": worst, "mean_dice_recorded": result["metrics"]["mean"]["dice"]["mean"],
            "mean_dice_now": summary["classes"]["mean"]["dice"]["mean"]}


def training(cell: Path, steps: int) -> dict:
    """The cell's first `steps` steps run again (killed there): its log rows against the cell's."""
    cfg = yaml.safe_load((cell / "run" / "config.yaml").read_text())
    options = {k: v for k, v in cfg.items() if k not in ("stage", "dataset", "num_classes", "classes",
                                                         "normalization", "spacing_mm", "profile", "method")}
    options.update(checkpoint_every=steps, val_every=0, threads=1)  # the log is flushed at step `steps`
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = Path(tmp) / "run.yaml"
        yaml_path.write_text(yaml.safe_dump(options))
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "idealseg", "finetune", cfg["dataset"], "--out", str(out), "--method",
                   cfg["method"], "--profile", cfg["profile"], "--config", str(yaml_path)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        rows = _rows_when_ready(out / "log.csv", proc, steps)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        shutil.rmtree(out, ignore_errors=True)
    recorded = {int(r["step"]): r for r in csv.DictReader(open(cell / "run" / "log.csv", newline=""))}
    keys = [k for k in rows[0] if k not in ("step", "time")] if rows else []
    differing = [(int(r["step"]), k) for r in rows for k in keys
                 if int(r["step"]) in recorded and r[k] != recorded[int(r["step"])].get(k)]
    return {"rows_compared": len(rows), "columns": keys, "differing": differing[:10], "identical": not differing}


def _rows_when_ready(log: Path, proc: subprocess.Popen, steps: int) -> list[dict]:
    """The rerun's log rows up to `steps`, once its checkpoint at `steps` has flushed them; then it is stopped."""
    rows: list[dict] = []
    while proc.poll() is None and not (rows and int(rows[-1]["step"]) >= steps):
        time.sleep(5)
        if log.exists():
            with open(log, newline="") as f:
                rows = list(csv.DictReader(f))
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    if not rows:
        raise SystemExit(f"reproduce_cell.py: error: the rerun wrote no log ({proc.stderr.read()[-400:]})")
    return [r for r in rows if int(r["step"]) <= steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", nargs="+", type=Path, help="finished cell folders (result.json, run/)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    claim_results_folder(args.out)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for cell in args.cells:
        t0 = time.time()
        record = {"machine": f"{cpu_model()}, 1 thread", "evaluation": evaluation(cell),
                  "training": training(cell, args.steps)}
        record["seconds"] = round(time.time() - t0, 1)
        results[str(cell)] = record
        with atomic_file(path) as f:
            json.dump(results, f, indent=1)
        print(json.dumps({str(cell): record}, indent=1))


if __name__ == "__main__":
    main()
