"""Per-scan quality scores: which of `predict`'s masks to check first, without labels.

For each run folder and each dataset's labelled scans, segments every scan as `predict` does (its
scale search, then the run's own post-processing) and computes, next to the true mean foreground
Dice, every candidate score from what inference has at hand:

- `confidence`: mean top-class probability over the pixels predicted foreground (the first probe,
  what the scale search maximises);
- `entropy`: minus the mean normalised predictive entropy over the predicted foreground;
- `flip_agreement`: mean foreground Dice between the mask and the mask of the left-right flipped scan;
- `scale_agreement`: mean foreground Dice between the mask and the masks at 0.9x and 1.1x of the
  in-plane spacing the scale search chose;
- `agreement`: mean foreground Dice over those three perturbations (evaluation/agreement.py);
- `header_gap`: minus the confidence the scale search gained over the header's spacing (a scan it
  had to rescale is a riskier one);
- `largest_component`: share of each class's raw foreground in its largest 3D connected component;
- `area_profile`: how unimodal each class's slice-area profile is from base to apex (1: rises
  then falls, as a heart's does);
- `rank_confidence_agreement`, `rank_all`: mean ranks within the dataset (a batch-relative score);
- added after the first results, from the stored per-scan numbers (`--rescore`): `confidence_header`
  (the confidence at the header's spacing, not the one the mask was made at: what a probe that
  ignores the scale search measures) and `mean_confidence_agreement` (the mean of the two).

Spearman's rank correlation of each with the true Dice, per run and dataset, with a bootstrap 95 %
interval over scans, goes to results.json and report.md.

    python benchmarks/scripts/quality.py --runs RUN [RUN ...] --datasets acdc=DIR:val other=DIR:train \\
        --out benchmarks/results/quality
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, stats

from idealseg.atomic import atomic_file
from idealseg.benchmark.cells import claim_results_folder
from idealseg.data.dataset import Dataset
from idealseg.errors import IdealsegError
from idealseg.evaluation.agreement import perturbation_agreement
from idealseg.evaluation.metrics import mean_foreground_dice
from idealseg.inference.predictor import Predictor
from idealseg.inference.quality import foreground_confidence
from idealseg.runfolder.environment import cpu_model
from idealseg.runfolder.folder import run_largest_component
from idealseg.transforms.components import largest_components
from idealseg.transforms.resample import oversize
from idealseg.transforms.spacing import in_plane

NEIGHBOURS = (0.9, 1.1)  # multiples of the chosen in-plane spacing for scale_agreement
VARIANTS = ("confidence", "entropy", "flip_agreement", "scale_agreement", "agreement", "header_gap",
            "largest_component", "area_profile", "rank_confidence_agreement", "rank_all", "confidence_header",
            "mean_confidence_agreement")
BOOTSTRAP = 2000


def volume_probabilities(predictor: Predictor, image: np.ndarray, spacing: tuple[float, float],
                         flip: bool = False) -> np.ndarray:
    """Class probabilities [Z, C, H, W] of a volume on its own grid, as the predictor computes them
    before its argmax (`flip`: of the left-right flipped scan, flipped back)."""
    scan = np.ascontiguousarray(image[:, :, ::-1]) if flip else image
    probs = predictor.probabilities(scan, spacing).float().cpu().numpy()
    return np.ascontiguousarray(probs[..., ::-1]) if flip else probs


def foreground_entropy(probs: np.ndarray) -> float:
    """Minus the mean predictive entropy (in units of log C) over the pixels predicted foreground."""
    label = probs.argmax(1)
    p = np.moveaxis(probs, 1, -1)[label > 0]
    if not len(p):
        return -1.0
    entropy = -(p * np.log(np.clip(p, 1e-12, None))).sum(-1) / np.log(probs.shape[1])
    return -float(entropy.mean())


def largest_component_share(mask: np.ndarray, num_classes: int) -> float:
    """Mean over foreground classes of the share of the class's voxels in its largest 3D component."""
    shares = []
    for c in range(1, num_classes):
        components, n = ndimage.label(mask == c)
        sizes = np.bincount(components.ravel())[1:]
        shares.append(float(sizes.max() / sizes.sum()) if n else 0.0)
    return float(np.mean(shares))


def area_profile(mask: np.ndarray, num_classes: int) -> float:
    """Mean over foreground classes of (2 max - first - last) / total variation of the slice areas:
    1 for a profile that rises then falls (or is flat), less for each extra jump."""
    scores = []
    for c in range(1, num_classes):
        area = (mask == c).sum((1, 2)).astype(float)
        variation = np.abs(np.diff(area)).sum()
        scores.append(1.0 if variation == 0 else float((2 * area.max() - area[0] - area[-1]) / variation))
    return float(np.mean(scores))


def scan_scores(predictor: Predictor, case, num_classes: int, cleaned: bool) -> dict:
    """The scale `predict` chooses, the true Dice of its mask, and every per-scan variant."""
    spacing = in_plane(case.spacing)
    factor = predictor.choose_scale(case.image, spacing)

    def at(f: float) -> tuple[float, float]:
        return (spacing[0] * f, spacing[1] * f)

    def post(m: np.ndarray) -> np.ndarray:
        return largest_components(m, num_classes) if cleaned else m

    probs = volume_probabilities(predictor, case.image, at(factor))
    raw = probs.argmax(1).astype(np.uint8)
    mask = post(raw)

    def segment(f: float, flip: bool = False) -> np.ndarray:
        return post(volume_probabilities(predictor, case.image, at(f), flip).argmax(1).astype(np.uint8))

    target = predictor.target_spacing
    near = [factor * n for n in NEIGHBOURS if not oversize(case.image.shape[1:], at(factor * n), target)]
    flipped = segment(factor, flip=True)
    scaled = [segment(f) for f in near]
    header = probs if factor == 1.0 else volume_probabilities(predictor, case.image, at(1.0))
    confidence = foreground_confidence(probs)
    return {"id": case.case_id, "factor": factor,
            "dice": round(mean_foreground_dice(mask, case.label, num_classes), 4),
            "confidence": confidence,
            "entropy": foreground_entropy(probs),
            "flip_agreement": mean_foreground_dice(mask, flipped, num_classes, absent=1.0),
            "scale_agreement": float(np.mean([mean_foreground_dice(mask, s, num_classes, absent=1.0)
                                               for s in scaled])),
            "agreement": perturbation_agreement(mask, [flipped, *scaled], num_classes),
            "header_gap": -(confidence - foreground_confidence(header)),
            "largest_component": largest_component_share(raw, num_classes),
            "area_profile": area_profile(mask, num_classes)}


def add_derived(rows: list[dict]) -> None:
    """The variants derived from the others: mean ranks (1 = lowest) within the dataset, the
    confidence at the header's spacing, the mean of confidence and agreement."""
    def rank(key: str) -> np.ndarray:
        return stats.rankdata([r[key] for r in rows])

    pair = (rank("confidence") + rank("agreement")) / 2
    every = np.mean([rank(k) for k in ("confidence", "entropy", "agreement", "largest_component", "area_profile")],
                    axis=0)
    for r, p, e in zip(rows, pair, every, strict=True):
        r["rank_confidence_agreement"], r["rank_all"] = float(p), float(e)
        r["confidence_header"] = r["confidence"] + r["header_gap"]
        r["mean_confidence_agreement"] = (r["confidence"] + r["agreement"]) / 2


def spearman(rows: list[dict], key: str, rng: np.random.Generator) -> dict:
    """Spearman's rho of a score with the true Dice, and a bootstrap 95 % interval over scans."""
    x, y = np.array([r[key] for r in rows]), np.array([r["dice"] for r in rows])
    rho = stats.spearmanr(x, y).statistic
    boot = []
    for _ in range(BOOTSTRAP):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boot.append(stats.spearmanr(x[i], y[i]).statistic)
    lo, hi = np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
    return {"rho": round(float(rho), 3), "ci95": [round(float(lo), 3), round(float(hi), 3)]}


def lscpu_model() -> str:
    """`lscpu`'s model name, else /proc/cpuinfo's."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return cpu_model()


def report(results: dict) -> str:
    """report.md: Spearman per variant, run and dataset (bootstrap 95 % interval), then the cost."""
    lines = ["# Per-scan quality scores against the true mean foreground Dice", "",
             f"{results['machine']}, wall time {results['wall_seconds']:.0f} s. Spearman's rho over each "
             "dataset's scans (bootstrap 95 % interval over scans); masks as `predict` makes them (scale search, "
             "the run's post-processing). `confidence_header` and `mean_confidence_agreement` were added after "
             "the first results were seen (post hoc).", ""]
    runs = list(results["runs"])
    cells = {(r, d): c for r, e in results["runs"].items() for d, c in e["datasets"].items()}
    datasets = list(dict.fromkeys(d for _, d in cells))
    for ds in datasets:
        first = next(c for (_, d), c in cells.items() if d == ds)
        lines += [f"## {ds} ({first['split']}, {len(first['scans'])} scans)", "",
                  "| variant | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
        for v in VARIANTS:
            row = [f"{c['spearman'][v]['rho']:.2f} [{c['spearman'][v]['ci95'][0]:.2f}, "
                   f"{c['spearman'][v]['ci95'][1]:.2f}]" if (c := cells.get((r, ds))) else "-" for r in runs]
            lines.append(f"| {v} | " + " | ".join(row) + " |")
        dice = [f"{np.mean([s['dice'] for s in c['scans']]):.3f}" if (c := cells.get((r, ds))) else "-"
                for r in runs]
        lines += ["| (mean Dice) | " + " | ".join(dice) + " |", ""]
        lines += [f"- {r}: {worst_third(c)}" for r in runs if (c := cells.get((r, ds)))] + [""]
    lines += ["Seconds per run and dataset (scale search and 5 volume inferences a scan): "
              + ", ".join(f"{r} {d}: {c['seconds']:.0f}" for (r, d), c in cells.items())]
    return "\n".join(lines) + "\n"


FAILURE_DICE = 0.7  # a mask below this mean foreground Dice is a failure a user must find


def worst_third(cell: dict) -> str:
    """Whether the lowest-scored third (by `confidence`) holds the failures and the lowest-Dice third."""
    scans = cell["scans"]
    k = len(scans) // 3
    low = {s["id"] for s in sorted(scans, key=lambda s: s["confidence"])[:k]}
    worst = {s["id"] for s in sorted(scans, key=lambda s: s["dice"])[:k]}
    failures = [s["id"] for s in scans if s["dice"] < FAILURE_DICE]
    return (f"the lowest-scored third ({k} scans) holds {sum(f in low for f in failures)} of the "
            f"{len(failures)} failures (Dice < {FAILURE_DICE}) and {len(low & worst)} of the {k} lowest-Dice scans")


def write(out: Path, results: dict) -> None:
    """results.json and report.md, each replaced whole."""
    with atomic_file(out / "results.json") as f:
        json.dump(results, f, indent=1)
    with atomic_file(out / "report.md") as f:
        f.write(report(results))


def rescore(out: Path) -> None:
    """Derived variants and correlations again from the stored per-scan scores (wall time kept)."""
    results = json.loads((out / "results.json").read_text())
    for entry in results["runs"].values():
        for cell in entry["datasets"].values():
            add_derived(cell["scans"])
            rng = np.random.default_rng(0)
            cell["spearman"] = {v: spearman(cell["scans"], v, rng) for v in VARIANTS}
    write(out, results)
    print(report(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="fine-tuning run folders in physical space")
    parser.add_argument("--datasets", nargs="+", required=True, help="NAME=DATASET_FOLDER:SPLIT (labelled cases)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the derived variants and correlations from OUT/results.json, no inference")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    claim_results_folder(out)  # report.md and results.json are rewritten: never in a folder of the user's
    if args.rescore:
        rescore(out)
        return
    t0 = time.time()
    results = {"machine": f"{lscpu_model()}, 1 thread", "neighbours": list(NEIGHBOURS), "runs": {}}
    for run_path in args.runs:
        predictor = Predictor.from_run(run_path, device="cpu", largest_component=False)  # cleaned below
        cfg, run = predictor.cfg, predictor.run_dir
        if not cfg.spacing_mm:
            raise IdealsegError(f"{run}: not a run in physical space (the scale variants need one)")
        name = str(run.relative_to(run.parents[1]) if run.name == "finetune" else run.name)
        cleaned = run_largest_component(run)
        entry = results["runs"][name] = {"path": str(run), "largest_component": cleaned, "datasets": {}}
        for spec in args.datasets:
            ds_name, rest = spec.split("=", 1)
            folder, split = rest.rsplit(":", 1)
            t1 = time.time()
            ds = Dataset(Path(folder))
            rows = []
            for c in ds.split(split):
                if c.labeled:
                    rows.append(scan_scores(predictor, ds.load(c.id), ds.num_classes, cleaned))
                    print(f"{name} {ds_name} {c.id}: x{rows[-1]['factor']:g} dice {rows[-1]['dice']:.3f} "
                          f"conf {rows[-1]['confidence']:.3f} agree {rows[-1]['agreement']:.3f}", flush=True)
            add_derived(rows)
            rng = np.random.default_rng(0)
            entry["datasets"][ds_name] = {
                "folder": folder, "split": split, "seconds": round(time.time() - t1, 1),
                "spearman": {v: spearman(rows, v, rng) for v in VARIANTS},
                "scans": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}
            results["wall_seconds"] = round(time.time() - t0, 1)
            write(out, results)
    print(report(results))


if __name__ == "__main__":
    try:
        main()
    except IdealsegError as exc:  # one line, as the CLI says it
        print(f"quality.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
