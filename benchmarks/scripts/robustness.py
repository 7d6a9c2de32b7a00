"""Robustness to framing: the validation volumes re-framed, segmented, and scored against their re-framed labels.

A model is only useful on other scanners if the size of a heart in its input does not depend on how
the scan was framed. This benchmark takes the ACDC validation patients as released (NIfTI with their
spacing), re-frames each volume the ways other centres frame theirs, and segments every version:

    native            the volume as released
    crop 240 mm       the in-plane field of view cropped (centred) to 240 mm
    pad 480 mm        zero-padded (centred) to a 480 mm field of view
    1.0 mm, 2.0 mm    resampled in-plane to that spacing (image linear, labels nearest)
    flip              mirrored in-plane (left-right)
    transpose         in-plane axes swapped

Dice is the mean over foreground classes; HD95 is in mm on the re-framed grid. The report gives each
framing's mean and its difference to native, paired over volumes.

    python benchmarks/scripts/robustness.py RUN ../shared/data/acdc-nifti --val-list ../shared/data/acdc/val.list \\
        --out benchmarks/results/robustness/NAME [--normalization minmax]

`--normalization` overrides the run's (runs trained before the run folder recorded it; SSL4MIS files
are min-max normalised volumes, so `minmax` is the training data's own scale for them).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

import idealseg
from idealseg.atomic import atomic_file
from idealseg.evaluation.metrics import volume_metrics
from idealseg.transforms.resample import centre

FRAMINGS = ("native", "crop 240 mm", "pad 480 mm", "1.0 mm", "2.0 mm", "flip", "transpose")


def reframe(image: np.ndarray, label: np.ndarray, spacing: tuple[float, float, float], how: str):
    """(image, label, spacing) of a [Z, H, W] volume framed `how`; spacing is (z, h, w) in mm."""
    z, h, w = spacing
    if how == "native":
        return image, label, spacing
    if how == "flip":
        return image[:, :, ::-1], label[:, :, ::-1], spacing
    if how == "transpose":
        return image.transpose(0, 2, 1), label.transpose(0, 2, 1), (z, w, h)
    if how in ("crop 240 mm", "pad 480 mm"):
        fov = 240.0 if how.startswith("crop") else 480.0
        size = (round(fov / h), round(fov / w))
        return centre(image, size), centre(label, size), spacing
    target = float(how.split()[0])
    factors = (1.0, h / target, w / target)
    image = ndimage.zoom(image, factors, order=1)
    label = ndimage.zoom(label, factors, order=0)
    return image, label, (z, target, target)


def validation_volumes(root: Path, val_list: Path) -> list[tuple[str, Path, Path]]:
    """(case id, image, label) of every labelled frame of the validation patients."""
    patients = sorted({line.split("_")[0] for line in val_list.read_text().split()})
    cases = []
    for patient in patients:
        for label in sorted((root / patient).glob(f"{patient}_frame??_gt.nii.gz")):
            image = label.with_name(label.name.replace("_gt", ""))
            cases.append((image.name.removesuffix(".nii.gz"), image, label))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="fine-tuning run folder")
    parser.add_argument("nifti", help="ACDC as released: patientXXX/patientXXX_frameYY[_gt].nii.gz")
    parser.add_argument("--val-list", required=True, help="SSL4MIS val.list: which patients are validation")
    parser.add_argument("--out", required=True)
    parser.add_argument("--normalization", help="override the run's intensity normalisation")
    parser.add_argument("--checkpoint", default="last")
    parser.add_argument("--largest-component", action="store_true",
                        help="keep each class's largest 3D connected component (post-processing)")
    args = parser.parse_args()
    model = idealseg.load(args.run, args.checkpoint)
    if args.normalization:
        model.normalization = args.normalization
    rows, t0 = [], time.perf_counter()
    for case, image_path, label_path in validation_volumes(Path(args.nifti), Path(args.val_list)):
        img = nib.load(image_path)
        image = np.asarray(img.dataobj, dtype=np.float32).transpose(2, 1, 0)  # (x, y, z) -> [Z, H, W]
        label = np.asarray(nib.load(label_path).dataobj).astype(np.uint8).transpose(2, 1, 0)
        zooms = img.header.get_zooms()[:3]
        spacing = (float(zooms[2]), float(zooms[1]), float(zooms[0]))
        for how in FRAMINGS:
            im, lab, sp = reframe(image, label, spacing, how)
            mask = model.segment(np.ascontiguousarray(im), spacing=sp,  # spacing: used by models in physical space
                                 largest_component=args.largest_component)
            metrics = volume_metrics(mask, lab, len(model.classes), sp)
            dice = float(np.nanmean([m["dice"] for m in metrics.values()]))  # an absent class is NaN: not scored
            hd = [m["hd95"] for m in metrics.values() if not np.isnan(m["hd95"])]
            rows.append({"case": case, "framing": how, "dice": dice,
                         "hd95_mm": float(np.mean(hd)) if hd else float("nan"), "shape": "x".join(map(str, lab.shape))})
        print(f"{case}: " + ", ".join(f"{r['framing']} {r['dice']:.3f}" for r in rows[-len(FRAMINGS):]), flush=True)
    write(Path(args.out), rows, args, time.perf_counter() - t0)


def write(out: Path, rows: list[dict], args: argparse.Namespace, seconds: float) -> None:
    """results.csv (volume x framing) and report.md (each framing's mean and paired difference to native)."""
    from idealseg.benchmark import machine

    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "results.csv") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    native = {r["case"]: r["dice"] for r in rows if r["framing"] == "native"}
    post = ", largest connected component per class" if args.largest_component else ""
    lines = [f"Run `{args.run}` ({args.checkpoint} checkpoint{post}), {len(native)} validation volumes of "
             f"`{args.nifti}`; "
             f"{machine()}, {seconds / 60:.1f} min.", "",
             "| framing | mean Dice | HD95 (mm) | Dice minus native: mean ± standard error |", "|---|---|---|---|"]
    summary = {}
    for how in FRAMINGS:
        sel = [r for r in rows if r["framing"] == how]
        d = np.array([r["dice"] - native[r["case"]] for r in sel])
        dice, hd = float(np.mean([r["dice"] for r in sel])), float(np.nanmean([r["hd95_mm"] for r in sel]))
        summary[how] = {"dice": dice, "hd95_mm": hd, "minus_native": float(d.mean())}
        diff = "" if how == "native" else f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f}"
        lines.append(f"| {how} | {dice:.3f} | {hd:.2f} | {diff} |")
    with atomic_file(out / "report.md") as f:
        f.write("\n".join(lines) + "\n")
    with atomic_file(out / "summary.json") as f:
        json.dump(summary, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
