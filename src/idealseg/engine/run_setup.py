"""A run resolved against its dataset and its folder checked, once, before anything is written.

The options a user gave (profile, YAML, the resumed run's record, the command line) are resolved in
config/resolve.py; here the dataset adds what it decides (config/resume_rules.FROM_DATASET: its
classes, its image channels (the network's input channels), their normalisation, the spacing its plan
gives), the label budget is drawn, and the run folder is checked against the result. The Trainer,
the run-folder check and the saved config.yaml then all read this one frozen configuration; `train`
builds its fine-tuning's set-up before pre-training starts, so that a run folder it cannot write is
refused before any work is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idealseg.config import RunConfig
from idealseg.data.budgets import Budget, select_budget
from idealseg.data.dataset import Dataset
from idealseg.data.fingerprint import load_plan
from idealseg.data.target_spacing import resolve_spacing
from idealseg.methods import get_method
from idealseg.runfolder.folder import check_run_folder


@dataclass(frozen=True)
class RunSetup:
    """Everything a Trainer starts from, checked: the run's final configuration, its dataset and the
    dataset's plan (copied into the run folder), the labelled cases, and how the folder is entered."""

    cfg: RunConfig
    run_dir: Path
    dataset: Dataset
    plan: dict[str, Any]
    budget: Budget | None
    resume: bool
    overwrite: bool


def setup_run(cfg: RunConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> RunSetup:
    """Check the method, read the dataset and its plan, add the dataset's values to `cfg`, draw the
    label budget and check the run folder: every refusal before the first write."""
    get_method(cfg.method, cfg.stage)
    dataset = Dataset(cfg.dataset, fold=cfg.fold_index)
    plan = load_plan(dataset)
    cfg = cfg.derive(num_classes=dataset.num_classes, in_channels=dataset.channels, classes=tuple(dataset.classes),
                     normalization=dataset.info.get("normalization", "percentile"),  # what predict assumed before
                     spacing_mm=resolve_spacing(cfg.target_spacing, dataset, plan))
    budget = select_budget(dataset, cfg.labeled, cfg.seed) if cfg.stage == "finetune" else None
    run_dir = Path(run_dir)
    check_run_folder(run_dir, cfg, resume, overwrite)
    return RunSetup(cfg, run_dir, dataset, plan, budget, resume, overwrite)
