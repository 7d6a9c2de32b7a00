"""`evaluate`: segment a split's volumes with a run and write per-volume CSV, summary JSON, table."""

from __future__ import annotations

import csv
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from idealseg import checks
from idealseg.atomic import atomic_file
from idealseg.data.dataset import SPLITS, Dataset
from idealseg.errors import IdealsegError
from idealseg.evaluation.clinical import ejection_fractions
from idealseg.evaluation.metrics import ABSENT, volume_metrics
from idealseg.inference.predictor import Predictor
from idealseg.inference.spacing import check_spacing
from idealseg.ownership import (
    EVAL_FILES,
    MANIFEST,
    check_no_overlap,
    check_replaceable,
    check_writable,
    read_manifest,
    record_written,
    write_manifest,
)
from idealseg.writer_lock import writer_lock

METRICS = ("dice", "hd95", "asd")
CHECKPOINTS = ("last", "best")


def evaluate_run(
    run: str | Path, split: str = "val", dataset: str | Path | None = None, checkpoint: str = "last",
    out: str | Path | None = None, flip_tta: bool = False, device: str | None = None,
    largest_component: bool | None = None, amp: bool | None = None, scale_search: bool = False,
) -> dict:
    """Evaluate `run` on `split`; returns the summary and writes it beside the CSV and table.
    `largest_component` None: the post-processing the run's validation chose; `amp` None: the
    precision the run trained in (bfloat16 autocast where the device has it: idealseg.precision);
    `scale_search`: segment each scan at the scale the model is most confident at (Predictor.choose_scale),
    as `predict` does on new scans."""
    run, split, checkpoint, device = checked_run_arguments(run, split, checkpoint, device)
    dataset = checks.optional_path(dataset, "--dataset")
    out = None if out is None else checks.output_path(out, "--out")
    flip_tta = checks.flag(flip_tta, "--tta")
    largest_component = checks.optional_flag(largest_component, "--largest-component")
    amp = checks.optional_flag(amp, "--amp")
    scale_search = checks.flag(scale_search, "--scale-search")
    predictor = Predictor.from_run(run, checkpoint, device, amp=amp, flip_tta=flip_tta, scale_search=scale_search,
                                   largest_component=largest_component)
    cfg, run_dir = predictor.cfg, predictor.run_dir
    fold = None if dataset is not None else cfg.fold_index  # a fold run's val is its fold's
    ds = Dataset(dataset or cfg.dataset, fold=fold)
    if cfg.classes and tuple(ds.classes) != tuple(cfg.classes):
        raise IdealsegError(f"{ds.root}: its classes {ds.classes} are not the run's {list(cfg.classes)}; "
                            "evaluate on a dataset of the same class set")
    cases = [c for c in ds.split(split) if c.labeled]
    if not cases:
        raise IdealsegError(f"{ds.root}: split {split!r} has no labelled cases to evaluate")
    check_spacing(cfg, ds.root, cases)
    out = Path(out) if out else run_dir / f"eval_{split}"
    check_evaluation_folder(out, run_dir, ds.root)  # before the lock makes the folder
    with writer_lock(out):  # one evaluation a folder: the second of two at once stops here
        check_evaluation_folder(out, run_dir, ds.root)
        return _score_and_write(predictor, ds, cases, split, checkpoint, out, flip_tta, scale_search)


def _score_and_write(predictor: Predictor, ds: Dataset, cases: list, split: str, checkpoint: str, out: Path,
                     flip_tta: bool, scale_search: bool) -> dict:
    """evaluate_run's scoring and writing, under the evaluation folder's lock."""
    cfg, run_dir = predictor.cfg, predictor.run_dir
    unit = "mm" if all(c.spacing for c in cases) else "voxels"
    rows, masks = [], {}
    t0 = time.perf_counter()
    for entry in tqdm(cases, desc=f"evaluate {split}", unit="vol"):
        case = ds.load(entry.id)
        mask = predictor.predict(case.image, case.spacing)
        masks[entry.id] = mask
        spacing = case.spacing if unit == "mm" else None
        for c, m in volume_metrics(mask, case.label, ds.num_classes, spacing).items():
            rows.append({"case": entry.id, "patient": entry.patient, "class": ds.classes[c], **m})
    seconds = time.perf_counter() - t0
    summary = summarise(rows, ds.classes[1:], unit)
    summary.update(run=str(run_dir), split=split, dataset=str(ds.root), checkpoint=checkpoint,
                   largest_component=predictor.largest_component, flip_tta=flip_tta, scale_search=scale_search,
                   autocast=str(predictor.precision or "off"),
                   volumes=len(cases), seconds=round(seconds, 2), method=cfg.method, labeled=cfg.labeled,
                   trained_steps=trained_steps(run_dir))
    ef = ejection_fractions(ds, cases, masks)
    if ef:
        summary["ejection_fraction"] = ef
    check_evaluation_folder(out, run_dir, ds.root)  # again: a user's file may have appeared meanwhile
    write_outputs(out, rows, summary)
    return summary


def trained_steps(run_dir: Path) -> int | None:
    """The steps a finished run trained (its summary.json), None while it trains: an evaluation records
    it, so that a report can tell a table scored on weights the run has since replaced."""
    try:
        return int(json.loads((run_dir / "summary.json").read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checked_run_arguments(run: Any, split: Any, checkpoint: Any, device: Any) -> tuple[Path, str, str, str]:
    """What every use of a trained run is given (evaluate, the API's load): checked before the run is
    read, so a typo is one line, not a missing file named `checkpoints/Best.pt` or a torch error."""
    return (checks.path(run, "RUN"), checks.text(split, "--split", SPLITS),
            checks.text(checkpoint, "--checkpoint", CHECKPOINTS), checks.device(device))


def check_evaluation_folder(out: Path, run_dir: Path, dataset: Path) -> None:
    """An evaluation writes only into its run's `eval_SPLIT`, or a folder that is new, empty or an
    earlier evaluation's (its manifest says so): never over the user's files, a run or a dataset."""
    check_no_overlap(out, [dataset], "evaluation folder")
    if out.resolve() == run_dir.resolve() or run_dir.resolve().is_relative_to(out.resolve()):
        raise IdealsegError(f"{out}: is or contains the run folder {run_dir}; give evaluate a folder of its own")
    check_replaceable(out, "evaluation")  # the run's own eval_SPLIT too: a user may have made that folder


def summarise(rows: list[dict], classes: list[str], unit: str) -> dict:
    """Mean and std over volumes per class and for the foreground mean; undefined distances
    (one mask empty) are excluded from the distance means and counted in `undefined`. Rows of a class
    absent from a volume (status "absent": in neither mask) are left out of every mean, counted per
    class in `absent`, and said once in a warning; a volume's foreground mean is over its other classes."""
    scored = [r for r in rows if r.get("status") != ABSENT]
    per_class: dict[str, dict] = {}
    for name in [*classes, "mean"]:
        sel = [r for r in scored if r["class"] == name] if name != "mean" else None
        if sel is None:  # mean over classes per volume, then over volumes
            by_case: dict[str, list] = {}
            for r in scored:
                by_case.setdefault(r["case"], []).append(r)
            sel = [{m: float(np.nanmean([r[m] for r in rs])) if not all(np.isnan(r[m]) for r in rs)
                    else float("nan") for m in METRICS} for rs in by_case.values()]
        stats = {}
        for m in METRICS:
            values = np.array([r[m] for r in sel], dtype=float)
            ok = values[~np.isnan(values)]
            stats[m] = {"mean": float(ok.mean()) if len(ok) else None,
                        "std": float(ok.std()) if len(ok) else None, "undefined": int(np.isnan(values).sum())}
        per_class[name] = stats
    absent = {name: sum(r["class"] == name for r in rows if r.get("status") == ABSENT) for name in classes}
    _say_absent(absent, len({r["case"] for r in rows}))
    return {"unit": unit, "classes": per_class, "absent": absent}


def _say_absent(absent: dict[str, int], volumes: int) -> None:
    """One warning per evaluation, not per volume: how many class/volume pairs had nothing to score."""
    total = sum(absent.values())
    if total:
        which = ", ".join(f"{name} in {n}" for name, n in absent.items() if n)
        warnings.warn(f"{total} class/volume pair(s) of {volumes} volume(s) have the class in neither the reference "
                      f"nor the mask ({which}); they are excluded from the means (per_volume.csv lists them as "
                      "'absent')", stacklevel=3)


def markdown_table(summary: dict) -> str:
    """The per-class table (Dice, HD95, ASD, mean ± std over volumes) that `evaluate` prints; a note
    under it counts the absent class/volume pairs left out of it, where there are any."""
    unit = summary["unit"]
    lines = [f"| class | Dice | HD95 ({unit}) | ASD ({unit}) |", "|---|---|---|---|"]
    for name, s in summary["classes"].items():
        cells = []
        for m in METRICS:
            v = s[m]
            cell = "n/a" if v["mean"] is None else f"{v['mean']:.3f} ± {v['std']:.3f}"
            if v["undefined"]:
                cell += f" ({v['undefined']} undefined)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    absent = sum(summary.get("absent", {}).values())
    if absent:
        lines += ["", f"{absent} class/volume pair(s) with the class in neither reference nor mask: not scored, "
                      "not in the means."]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, rows: list[dict], summary: dict) -> None:
    """per_volume.csv, summary.json and table.md in `out`, which is marked as an evaluation folder."""
    out.mkdir(parents=True, exist_ok=True)
    fresh = read_manifest(out) is None
    try:
        _write_marked(out, rows, summary)
    except BaseException:
        if fresh:  # a first evaluation that could not be written leaves no folder that claims to be one
            (out / MANIFEST).unlink(missing_ok=True)
        raise


def _write_marked(out: Path, rows: list[dict], summary: dict) -> None:
    write_manifest(out, "evaluation")
    check_writable(out, EVAL_FILES)
    record_written(out, [out / name for name in EVAL_FILES])  # before the writes: a kill leaves them ours
    # the three are renamed into place together, once all are written: a failed write leaves the old set
    with atomic_file(out / "per_volume.csv") as table, atomic_file(out / "summary.json") as js, \
            atomic_file(out / "table.md") as md:
        writer = csv.DictWriter(table, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        json.dump(summary, js, indent=1)
        md.write(f"{summary['method']} ({summary['labeled']} labelled), {summary['split']} split, "
                 f"{summary['volumes']} volumes\n\n" + markdown_table(summary))
        for handle in (table, js, md):
            handle.flush()  # every write done (or failed) before the first rename
