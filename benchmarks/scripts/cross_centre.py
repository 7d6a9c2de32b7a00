"""Another centre's scans: a model trained on ACDC, scored on ACDC validation and on another centre.

Trains one run per recipe and augmentation on the SSL4MIS split's 7 labelled patients in physical
space, 1 thread: `supervised` (a plain U-Net, Adam 1e-3, `--iterations` steps) and `default`
(`idealseg train` as a user runs it: IDEAL pre-training, then BCP, the cpu profile's budget), and
`default+other` (the same, with the other centre's scans joined to the training set unlabelled,
`prepare --unlabeled`: their labels are never read), and `default+other-rescaled` (those scans each
stored at the multiple of its header's spacing that the `default` run of the same seed and
augmentation would segment it at, `prepare --unlabeled-scale-from`; that run is trained first).
Then it scores each run
- on ACDC validation (the run's own post-processing, as `idealseg evaluate` does), also with the
  scale search (what it costs where the header is right),
- on the other centre's labelled scans, at their header's spacing and with `predict`'s scale search,
- on the other centre at fixed multiples of the header's in-plane spacing (the diagnosis: where the
  Dice that a scanner change costs goes).

    python benchmarks/scripts/cross_centre.py --acdc ../shared/data/acdc --acdc-nifti ../shared/data/acdc-nifti \\
        --other ../shared/data/mscmr-c0-dev --label-map 600:1,200:2,500:3 \\
        --out benchmarks/results/cross_centre [--recipes supervised,default,default+other,default+other-rescaled] \\
        [--augmentations weak,nnunet]

Datasets and runs go to `--work` (default `runs/cross_centre`); the results folder gets results.json,
report.md and the per-volume CSVs. A killed run resumes from its checkpoint when run again.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

import idealseg
from idealseg.atomic import atomic_file
from idealseg.benchmark.cells import claim_results_folder
from idealseg.data.dataset import Dataset
from idealseg.errors import IdealsegError
from idealseg.evaluation.evaluate import evaluate_run
from idealseg.evaluation.metrics import mean_foreground_dice
from idealseg.inference.predictor import Predictor
from idealseg.runfolder.environment import cpu_model
from idealseg.runfolder.folder import load_run, run_largest_component

FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3)


def datasets(args: argparse.Namespace, work: Path, recipes: list[str]) -> tuple[Path, Path, Path | None]:
    """ACDC (SSL4MIS split, spacing from the release), the other centre (all its scans in one split, to
    score), and, for the `default+other` recipe, ACDC with the other centre's scans joined unlabelled;
    each prepared once."""
    acdc, other, joined = work / "acdc", work / "other", work / "acdc_plus_other"
    if not (acdc / "dataset.json").exists():
        idealseg.prepare("ssl4mis", args.acdc, acdc, spacing_from=args.acdc_nifti)
    if not (other / "dataset.json").exists():
        idealseg.prepare("nifti", args.other, other, label_map=args.label_map, classes=args.classes.split(","),
                         val="0")
    if "default+other" not in recipes:
        return acdc, other, None
    if not (joined / "dataset.json").exists():
        idealseg.prepare("ssl4mis", args.acdc, joined, spacing_from=args.acdc_nifti, unlabeled=args.other)
    return acdc, other, joined


def rescaled_set(args: argparse.Namespace, work: Path, base_run: Path, tag: str) -> Path:
    """ACDC with the other centre's scans joined unlabelled, each stored at the multiple of its header's
    spacing that `base_run` (the default recipe trained on ACDC alone, same augmentation and seed) would
    segment it at (`prepare --unlabeled-scale-from`); prepared once per base run."""
    joined = work / f"acdc_plus_other_rescaled{tag}"
    if not (joined / "dataset.json").exists():
        idealseg.prepare("ssl4mis", args.acdc, joined, spacing_from=args.acdc_nifti, unlabeled=args.other,
                         unlabeled_scale_from=base_run)
    return joined


def train(acdc: Path, run: Path, recipe: str, augmentation: str, iterations: int, seed: int = 0
          ) -> tuple[Path, float]:
    """One run (resumed if it was killed): its fine-tuning folder and its training seconds."""
    if recipe == "supervised":
        if not (run / "summary.json").exists():
            idealseg.finetune(acdc, run, method="supervised", labeled="ssl4mis:7", optimizer="adam", lr=1e-3,
                              iterations=iterations, threads=1, augmentation=augmentation, resume=run.exists(),
                              seed=seed)
        return run, json.loads((run / "summary.json").read_text())["seconds"]
    if not (run / "finetune" / "summary.json").exists():
        idealseg.train(acdc, run, labeled="ssl4mis:7", threads=1, augmentation=augmentation, resume=run.exists(),
                       seed=seed)
    seconds = sum(json.loads((run / stage / "summary.json").read_text())["seconds"] for stage in ("pretrain",
                                                                                                  "finetune"))
    return run / "finetune", seconds


def score(run: Path, dataset: Path, split: str, out: Path, scale_search: bool) -> dict:
    """Mean Dice per class over the split's volumes, and the evaluation's own numbers."""
    summary = evaluate_run(run, split, dataset, out=out, scale_search=scale_search, device="cpu")
    dice = {name: round(c["dice"]["mean"], 3) for name, c in summary["classes"].items()}
    return {"dice": dice, "volumes": summary["volumes"], "seconds": summary["seconds"],
            "largest_component": summary["largest_component"]}


def scale_sweep(run: Path, dataset: Path) -> dict[str, float]:
    """Mean foreground Dice on the dataset's labelled train cases with every scan's in-plane spacing
    multiplied by each factor (the run's post-processing, no scale search)."""
    cfg, method, _ = load_run(run)
    predictor = Predictor.from_method(method, cfg, "cpu", largest_component=run_largest_component(run))
    ds = Dataset(dataset)
    cases = [ds.load(c.id) for c in ds.split("train") if c.labeled]
    sweep = {}
    for factor in FACTORS:
        scores = []
        for case in cases:
            z, y, x = case.spacing
            case.spacing = (z, y * factor, x * factor)
            scores.append(mean_foreground_dice(predictor.predict(case.image, case.spacing), case.label,
                                               ds.num_classes))
            case.spacing = (z, y, x)
        sweep[f"{factor:g}"] = round(float(np.mean(scores)), 3)
        print(f"{run.name}: spacing x{factor:g}: {sweep[f'{factor:g}']}", flush=True)
    return sweep


def report(results: dict) -> str:
    """The markdown table: ACDC validation, the other centre at its header's spacing and with scale search."""
    lines = [f"# Another centre: {results['other']}", "",
             f"{results['labeled']} labelled ACDC patients; supervised: {results['iterations']} steps, default: "
             f"`idealseg train`'s cpu profile; {results['machine']}. Mean foreground Dice.", "",
             "| recipe, augmentation | ACDC val | ACDC val, scale search | other centre | other centre, scale search "
             "| train (s) |", "|---|---|---|---|---|---|"]
    for name, r in results["runs"].items():
        lines.append(f"| {name} | {r['acdc_val']['dice']['mean']:.3f} | "
                     f"{r['acdc_val_scale_search']['dice']['mean']:.3f} | {r['other']['dice']['mean']:.3f} | "
                     f"{r['other_scale_search']['dice']['mean']:.3f} | {r['train_seconds']:.0f} |")
    lines += ["", "Mean foreground Dice on the other centre with its in-plane spacing multiplied by a factor:", "",
              "| recipe, augmentation | " + " | ".join(f"x{f:g}" for f in FACTORS) + " |",
              "|---|" + "---|" * len(FACTORS)]
    for name, r in results["runs"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r['scale_sweep'][f'{f:g}']:.3f}" for f in FACTORS) + " |")
    return "\n".join(lines) + "\n"


def _scan_dice(folder: Path) -> dict[str, float]:
    """Mean foreground Dice per scan of one evaluation folder's per_volume.csv."""
    per_scan: dict[str, list[float]] = {}
    with open(folder / "per_volume.csv", newline="") as f:
        for row in csv.DictReader(f):
            per_scan.setdefault(row["case"], []).append(float(row["dice"]))
    return {case: float(np.mean(v)) for case, v in per_scan.items()}


EVALUATIONS = (("other", "other centre, header's spacing"), ("other_scale_search", "other centre, scale search"),
               ("acdc_val", "ACDC validation"))


def paired(out: Path, results: dict, base: str = "default",
           joined: tuple[str, ...] = ("default+other", "default+other-rescaled")) -> list[str]:
    """The other centre's scans as unlabelled data, paired: each of `joined` minus `base`, per augmentation,
    over the scans (or ACDC validation volumes) and seeds both ran; mean ± standard error."""
    lines = []
    for recipe in joined:
        for augmentation in ("weak", "nnunet"):
            lines += _paired_lines(out, results, base, recipe, augmentation)
    if lines:
        lines = ["", "The other centre's scans as unlabelled training data, paired over volumes and seeds (mean "
                 "foreground Dice, mean ± standard error, pairs):", "",
                 "| recipe minus default, augmentation | " + " | ".join(label for _, label in EVALUATIONS) + " |",
                 "|---|" + "---|" * len(EVALUATIONS), *lines]
    return lines


def _paired_lines(out: Path, results: dict, base: str, joined: str, augmentation: str) -> list[str]:
    """`paired`'s row for one recipe and augmentation (none where no seed ran both)."""
    cells = []
    for evaluation, _ in EVALUATIONS:
        diffs = []
        for name in results["runs"]:
            parts = name.split(", ")
            if parts[0] != base or parts[1] != augmentation:
                continue
            tag = "".join(f"_seed{p.split()[1]}" for p in parts[2:])
            a = out / f"{base}_{augmentation}{tag}" / evaluation
            b = out / f"{joined}_{augmentation}{tag}" / evaluation
            if (a / "per_volume.csv").exists() and (b / "per_volume.csv").exists():
                da, db = _scan_dice(a), _scan_dice(b)
                diffs += [db[c] - da[c] for c in da if c in db]
        if len(diffs) < 2:
            return []
        d = np.array(diffs)
        cells.append(f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f} ({len(d)})")
    return [f"| {joined}, {augmentation} | " + " | ".join(cells) + " |"]


def write_report(out: Path, results: dict) -> None:
    """report.md: the tables, then the paired lines on the other centre's unlabelled scans."""
    with atomic_file(out / "report.md") as f:
        f.write(report(results) + "\n".join(paired(out, results)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acdc", required=True, help="ACDC in the SSL4MIS layout")
    parser.add_argument("--acdc-nifti", required=True, help="the same patients as released (for their spacing)")
    parser.add_argument("--other", required=True, help="the other centre's scans, Decathlon layout, with labels")
    parser.add_argument("--label-map", default=None, help="the other centre's label codes to ACDC's classes")
    parser.add_argument("--classes", default="background,RV,Myo,LV")
    parser.add_argument("--recipes", default="supervised")
    parser.add_argument("--augmentations", default="weak,nnunet")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="training seed (rows of seeds other than 0 say theirs)")
    parser.add_argument("--report-only", action="store_true", help="rewrite report.md from results.json, no run")
    parser.add_argument("--work", default="runs/cross_centre")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    claim_results_folder(out)  # report.md and results.json are rewritten: never in a folder of the user's
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
        write_report(out, results)
        return
    recipes = args.recipes.split(",")
    acdc, other, joined = datasets(args, work, recipes)
    results = {"other": str(args.other), "labeled": "ssl4mis:7", "iterations": args.iterations,
               "machine": f"{cpu_model()}, 1 thread", "runs": {}}
    if (out / "results.json").exists():  # runs scored before keep their entries
        results["runs"] = json.loads((out / "results.json").read_text())["runs"]
    for recipe in recipes:
        for augmentation in args.augmentations.split(","):
            tag = f"_seed{args.seed}" if args.seed else ""
            name = f"{recipe}, {augmentation}" + (f", seed {args.seed}" if args.seed else "")
            t0 = time.time()
            folder = out / f"{recipe}_{augmentation}{tag}"
            training_set = joined if recipe == "default+other" else acdc
            if recipe == "default+other-rescaled":
                base = work / "runs" / f"default_{augmentation}{tag}" / "finetune"
                if not (base / "summary.json").exists():
                    raise IdealsegError(f"{base}: the default recipe's run of this seed and augmentation is needed "
                                        "first (--recipes default,default+other-rescaled)")
                training_set = rescaled_set(args, work, base, f"_{augmentation}{tag}")
            run, seconds = train(training_set, work / "runs" / f"{recipe}_{augmentation}{tag}", recipe,
                                 augmentation, args.iterations, args.seed)
            entry = {"train_seconds": seconds,
                     "acdc_val": score(run, acdc, "val", folder / "acdc_val", False),
                     "acdc_val_scale_search": score(run, acdc, "val", folder / "acdc_val_scale_search", True),
                     "other": score(run, other, "train", folder / "other", False),
                     "other_scale_search": score(run, other, "train", folder / "other_scale_search", True),
                     "scale_sweep": scale_sweep(run, other)}
            entry["wall_seconds"] = round(time.time() - t0)
            if (out / "results.json").exists():  # rows another instance scored meanwhile (one per core) are kept
                results["runs"] = {**json.loads((out / "results.json").read_text())["runs"], **results["runs"]}
            results["runs"][name] = entry
            with atomic_file(out / "results.json") as f:
                json.dump(results, f, indent=1)
            write_report(out, results)
    print((out / "report.md").read_text())


if __name__ == "__main__":
    try:
        main()
    except IdealsegError as exc:  # one line, as the CLI says it
        print(f"cross_centre.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
