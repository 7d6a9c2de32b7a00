"""PNG figures (matplotlib, no screen needed): training curves, overlays, Dice vs labelled patients."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from idealseg.atomic import atomic_path  # noqa: E402

CLASS_COLORS = ListedColormap([(0, 0, 0, 0), (0.9, 0.2, 0.2, 0.55), (0.2, 0.8, 0.2, 0.55), (0.2, 0.4, 1.0, 0.55),
                               (1, 0.8, 0, 0.55), (0.8, 0, 0.8, 0.55), (0, 0.8, 0.8, 0.55), (1, 0.5, 0, 0.55)])


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


NOT_PLOTTED = ("step", "time", "lr", "valid")
LEGEND_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "fontsize": 7, "frameon": False}


def _is_dice(key: str) -> bool:
    """Dice columns (validation, per class, pseudo-label quality) share a 0-1 axis; losses get their own."""
    return "dice" in key


def read_log(log_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """Each logged column as (step, value) points, empty cells skipped (validation is logged every N steps);
    a row that is not numbers (an edited or damaged log.csv) is skipped, with one line saying how many."""
    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in (rows[0] if rows else {}) if k is not None and k not in NOT_PLOTTED]
    parsed = [p for p in (_parse_row(r, keys) for r in rows) if p is not None]
    if len(parsed) < len(rows):
        warnings.warn(f"{log_csv}: skipped {len(rows) - len(parsed)} row(s) that are not numbers", stacklevel=3)
    series: dict[str, list[tuple[int, float]]] = {}
    for key in keys:
        pts = [(step, values[key]) for step, values in parsed if key in values]
        if pts:
            series[key] = pts
    return series


def _parse_row(row: dict, keys: list[str]) -> tuple[int, dict[str, float]] | None:
    """(step, the row's filled cells as numbers), or None where any cell is not a number."""
    try:
        return int(row["step"]), {k: float(row[k]) for k in keys if row.get(k) not in (None, "")}
    except (TypeError, ValueError, KeyError):
        return None


def training_curves(log_csv: Path, path: Path, title: str = "") -> Path:
    """Losses and Dice on separate axes (their scales differ), legends beside the plots so no curve is hidden."""
    series = read_log(log_csv)
    dice = {k: v for k, v in series.items() if _is_dice(k)}
    losses = {k: v for k, v in series.items() if not _is_dice(k)}
    panels = [(losses, "loss"), (dice, "Dice")] if dice else [(losses, "loss")]
    # constrained layout keeps room for each legend beside its panel (else the loss panel's runs under the Dice one)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 3.5), squeeze=False, layout="constrained")
    for ax, (curves, ylabel) in zip(axes[0], panels, strict=True):
        for key, pts in curves.items():
            ax.plot(*zip(*pts, strict=True), label=key, marker="o" if ylabel == "Dice" and len(pts) < 40 else None,
                    markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if ylabel == "Dice":
            ax.set_ylim(0, 1)
        if curves:
            ax.legend(**LEGEND_OUTSIDE)
    fig.suptitle(title)
    return _save(fig, path)


def overlay(image: np.ndarray, reference: np.ndarray | None, prediction: np.ndarray, path: Path,
            slices: list[int] | None = None, title: str = "", classes: list[str] | None = None) -> Path:
    """Rows of slices; columns: image, reference over image (when there is one), prediction over image;
    a colour key names each class so a reader knows which structure is which."""
    shown = reference if reference is not None else prediction
    if slices is None:
        fg = [z for z in range(image.shape[0]) if shown[z].any()] or list(range(image.shape[0]))
        slices = sorted({fg[len(fg) // 4], fg[len(fg) // 2], fg[(3 * len(fg)) // 4]})
    columns = [(None, "image"), *([(reference, "reference")] if reference is not None else []),
               (prediction, "prediction")]
    fig, axes = plt.subplots(len(slices), len(columns), figsize=(3 * len(columns), 3 * len(slices)), squeeze=False)
    for row, z in enumerate(slices):
        for col, (mask, name) in enumerate(columns):
            ax = axes[row, col]
            ax.imshow(image[z], cmap="gray")
            if mask is not None:
                ax.imshow(mask[z], cmap=CLASS_COLORS, vmin=0, vmax=len(CLASS_COLORS.colors) - 1,
                          interpolation="nearest")
            ax.set_title(f"{name}, slice {z}")
            ax.axis("off")
    if classes:
        last = len(CLASS_COLORS.colors) - 1  # imshow clips classes above it to its colour
        key = [Patch(color=CLASS_COLORS.colors[min(c, last)][:3], label=name) for c, name in enumerate(classes) if c]
        fig.legend(handles=key, loc="lower center", ncol=min(len(key), 6), frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    return _save(fig, path)


def dice_vs_labels(results: list[dict], path: Path) -> Path:
    """Mean foreground Dice against the label budget, one line per method (benchmark results)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    budgets = list(dict.fromkeys(r["labeled"] for r in results))
    for name in dict.fromkeys(r["name"] for r in results):
        xs, ys = [], []
        for i, b in enumerate(budgets):
            rs = [r["metrics"]["mean"]["dice"]["mean"] for r in results if r["name"] == name and r["labeled"] == b]
            if rs:
                xs.append(i)
                ys.append(float(np.mean(rs)))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xticks(range(len(budgets)), [str(b) for b in budgets])
    ax.set_xlabel("labelled patients")
    ax.set_ylabel("mean foreground Dice")
    ax.legend(fontsize=7)
    return _save(fig, path)


def dice_vs_compute(curves: list[dict], path: Path) -> Path:
    """Validation Dice against training minutes, one panel per label budget, one colour per method."""
    budgets = list(dict.fromkeys(c["labeled"] for c in curves))
    names = list(dict.fromkeys(c["name"] for c in curves))
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 3.8), sharey=True, squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, budget in zip(axes[0], budgets, strict=True):
        labelled: set[str] = set()  # one legend entry per method, however many seeds
        for c in curves:
            if c["labeled"] == budget and c["minutes"]:
                ax.plot(c["minutes"], c["dice"], marker=".", color=colors(names.index(c["name"]) % 10),
                        label=None if c["name"] in labelled else c["name"])
                labelled.add(c["name"])
        ax.set_title(f"{budget} labelled")
        ax.set_xlabel("training compute (min), pre-training included")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("validation mean Dice")
    return _save(fig, path)
