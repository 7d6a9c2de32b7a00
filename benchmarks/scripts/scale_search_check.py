"""Does the scale search hurt scans like the training data, and does framing matter?

For each run (a model in physical space) and each labelled scan of ACDC validation (read from the
released NIfTI files and normalised as `predict` does), of the same scans zero-padded to twice
their field of view, and of another centre's scans, records the scale search's evidence (the mean
top-class probability over the predicted foreground at each multiple of the header's in-plane
spacing, over the slices looked at and slice by slice) and the mean foreground Dice at the
multiples that some rule picks. Rules compared, all from the same evidence:

- `off`: the header's spacing (1x);
- `old`: the most confident multiple where it beats 1x by 0.02 (the rule before this check);
- `new`: Predictor's rule (ScaleEvidence.decide: SCALE_MARGIN and SCALE_SLICE_SHARE);
- `margin only`, `slices only`: each half of the new rule on its own, to see which part does the work;
- `margin 0.03`, `majority 0.75`: the new rule with a smaller margin, or asking 3 of 4 slices.

The padded copies are also segmented with `Predictor.segment` itself (search off and on) and compared
voxel by voxel with the unpadded scan's mask. Writes report.md and results.json to OUT.

    python benchmarks/scripts/scale_search_check.py --runs weak=RUN strong=RUN \\
        --acdc-nifti ../shared/data/acdc-nifti --val patient002,patient019,... \\
        --other ../shared/data/mscmr-c0-dev --label-map 600:1,200:2,500:3 \\
        --out benchmarks/results/scale_search
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from idealseg.atomic import atomic_file
from idealseg.data.importers.nifti import apply_label_map, parse_label_map
from idealseg.data.nifti_io import load_nifti, read_scan, to_zhw
from idealseg.evaluation.metrics import dice_score, mean_foreground_dice
from idealseg.inference.predict import run_normalization
from idealseg.inference.predictor import SCALE_MARGIN, SCALE_SLICE_SHARE, Predictor, ScaleEvidence, content_box
from idealseg.runfolder.environment import cpu_model
from idealseg.transforms.normalize import normalize_volume
from idealseg.transforms.spacing import in_plane

OLD_MARGIN = 0.02
RULES: dict[str, Callable[[ScaleEvidence], float]] = {
    "off": lambda e: 1.0,
    "old": lambda e: e.decide(margin=OLD_MARGIN, share=0.0),
    "new": lambda e: e.decide(),
    "margin only": lambda e: e.decide(share=0.0),
    "slices only": lambda e: e.decide(margin=OLD_MARGIN),
    "margin 0.03": lambda e: e.decide(margin=0.03),
    "majority 0.75": lambda e: e.decide(share=0.75),
}
Scan = tuple[str, np.ndarray, np.ndarray, tuple[float, float]]  # name, raw [Z, H, W], label, in-plane spacing


def acdc_scans(root: Path, patients: list[str]) -> Iterator[Scan]:
    """The labelled frames of the named ACDC patients, raw, with their labels and spacing."""
    for patient in patients:
        for label_path in sorted((root / patient).glob("*_gt.nii.gz")):
            scan = read_scan(label_path.with_name(label_path.name.replace("_gt", "")))
            label = to_zhw(np.asarray(load_nifti(label_path, check_spacing=False)[0]), scan.axes).astype(np.uint8)
            yield label_path.name.replace("_gt.nii.gz", ""), scan.zhw, label, in_plane(scan.spacing)


def other_scans(root: Path, label_map: dict[int, int] | None) -> Iterator[Scan]:
    """Another centre's Decathlon folder: imagesTr with labelsTr, codes renumbered by the label map."""
    for image_path in sorted((root / "imagesTr").glob("*.nii*")):
        scan = read_scan(image_path)
        label_path = root / "labelsTr" / image_path.name
        label = to_zhw(np.asarray(load_nifti(label_path, check_spacing=False)[0]), scan.axes)
        yield image_path.name.split(".")[0], scan.zhw, apply_label_map(label, label_map, label_path), \
            in_plane(scan.spacing)


def padded(raw: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A scan zero-padded to twice its field of view in-plane (half its size on each side), and its label."""
    pad = ((0, 0), (raw.shape[1] // 2,) * 2, (raw.shape[2] // 2,) * 2)
    return np.pad(raw, pad), np.pad(label, pad)


def measure(predictor: Predictor, normalization: str, scans: list[Scan], pad: bool) -> list[dict]:
    """Per scan: the evidence, the multiple each rule picks and the Dice there (with `pad`, of the padded
    copy, plus how well Predictor.segment's masks of it agree with the unpadded scan's)."""
    classes = len(predictor.cfg.classes)
    plain = predictor.with_choices(scale_search=False)
    rows = []
    for name, raw, label, spacing in scans:
        started = time.perf_counter()
        row: dict = {"scan": name}
        if pad:
            big_raw, big_label = padded(raw, label)
            small, image = normalize_volume(raw, normalization), normalize_volume(big_raw, normalization)
            h, w = raw.shape[1] // 2, raw.shape[2] // 2
            inside = image[:, h:h + raw.shape[1], w:w + raw.shape[2]]
            row["normalised_max_difference"] = float(np.abs(inside - small).max())
            for search in (False, True):
                both = [predictor.with_choices(scale_search=search).segment(v, spacing) for v in (small, image)]
                crop = both[1].mask[:, h:h + raw.shape[1], w:w + raw.shape[2]]
                key = "search" if search else "header"
                row[f"mask_agreement_{key}"] = float(np.mean([dice_score(crop == c, both[0].mask == c)
                                                              for c in range(1, classes)]))
                row[f"outside_foreground_{key}"] = int(np.count_nonzero(both[1].mask) - np.count_nonzero(crop))
            raw, label = big_raw, big_label
        image = normalize_volume(raw, normalization)
        evidence = predictor.scale_evidence(image[(..., *content_box(image))], spacing)  # as segment sees it
        row["confidence"] = {f"{f:g}": round(c, 4) for f, c in evidence.confidence.items()}
        row["wins"] = {f"{f:g}": evidence.wins(f) for f in evidence.confidence}
        dice: dict[float, float] = {}
        for rule, decide in RULES.items():
            factor = decide(evidence)
            if factor not in dice:
                mask = plain.segment(image, (spacing[0] * factor, spacing[1] * factor)).mask
                dice[factor] = mean_foreground_dice(mask, label, classes)
            row[rule] = {"scale": factor, "dice": round(dice[factor], 4)}
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(name, {r: (row[r]["scale"], row[r]["dice"]) for r in RULES}, flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Mean Dice per rule, and how many scans each rule moved off the header's scale."""
    return {rule: {"dice": round(float(np.mean([r[rule]["dice"] for r in rows])), 4),
                   "moved": sum(r[rule]["scale"] != 1.0 for r in rows)} for rule in RULES}


def report(results: dict) -> str:
    """report.md: the table of rules per run and set of scans, the padding check, the machine and time."""
    lines = ["# Scale search: the header's scale unless the evidence is strong", "",
             f"New rule: the most confident multiple must beat 1x by {results['margin']} in mean foreground "
             f"confidence and be more confident on at least {results['share']:.0%} of the slices looked at; "
             f"old rule: a {OLD_MARGIN} margin alone. Mean foreground Dice (scans moved off 1x).", "",
             "| run | scans | " + " | ".join(RULES) + " |", "|---|---|" + "---|" * len(RULES)]
    for run, sets in results["runs"].items():
        for which, rows in sets.items():
            s = summary(rows)
            cells = " | ".join(f"{s[r]['dice']:.3f} ({s[r]['moved']})" for r in RULES)
            lines.append(f"| {run} | {which} ({len(rows)}) | {cells} |")
    lines += ["", "Padded copies (ACDC validation zero-padded to twice the field of view): Predictor.segment's "
              "mask of the padded copy against the unpadded scan's, mean foreground Dice inside the original "
              "field of view, and foreground voxels outside it; the largest normalised-value difference inside.", "",
              "| run | agreement, header | agreement, search | foreground outside | normalised max difference |",
              "|---|---|---|---|---|"]
    for run, sets in results["runs"].items():
        rows = sets.get("acdc val padded", [])
        if rows:
            agree = [np.mean([r[f"mask_agreement_{k}"] for r in rows]) for k in ("header", "search")]
            outside = sum(r["outside_foreground_header"] + r["outside_foreground_search"] for r in rows)
            diff = max(r["normalised_max_difference"] for r in rows)
            lines.append(f"| {run} | {agree[0]:.4f} | {agree[1]:.4f} | {outside} | {diff:.3g} |")
    lines += ["", f"Runs: {', '.join(f'{k}: {v}' for k, v in results['run_dirs'].items())}.",
              f"Machine: {results['cpu']}, {results['threads']} thread(s); {results['seconds']:.0f} s in all.",
              "Per-scan evidence and Dice: results.json.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=RUN_FOLDER, models in physical space")
    parser.add_argument("--acdc-nifti", required=True, type=Path)
    parser.add_argument("--val", required=True, help="ACDC validation patients, comma-separated")
    parser.add_argument("--other", type=Path, help="another centre's Decathlon folder with labels")
    parser.add_argument("--label-map", default=None)
    parser.add_argument("--padded", type=int, default=6, help="how many ACDC scans get a padded copy (time)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    acdc = list(acdc_scans(args.acdc_nifti, args.val.split(",")))
    other = list(other_scans(args.other, parse_label_map(args.label_map))) if args.other else []
    results: dict = {"margin": SCALE_MARGIN, "share": SCALE_SLICE_SHARE, "runs": {}, "run_dirs": {},
                     "cpu": cpu_model(), "threads": 1}
    for spec in args.runs:
        name, run = spec.split("=", 1)
        predictor = Predictor.from_run(run, device="cpu")
        normalization = run_normalization(predictor.cfg)
        results["run_dirs"][name] = run
        sets = {"acdc val": measure(predictor, normalization, acdc, pad=False),
                "acdc val padded": measure(predictor, normalization, acdc[:args.padded], pad=True)}
        if other:
            sets["other centre"] = measure(predictor, normalization, other, pad=False)
        results["runs"][name] = sets
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "results.json") as f:
        json.dump(results, f, indent=1)
    with atomic_file(args.out / "report.md") as f:
        f.write(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
