"""Stage runners behind the CLI: pretrain, finetune, and train (both, in one folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from idealseg.config import resolve_config
from idealseg.engine.trainer import Trainer
from idealseg.errors import IdealsegError


def run_stage(
    stage: str, dataset: str | Path, out: str | Path, *, profile: str = "cpu", config: str | None = None,
    resume: bool = False, overwrite: bool = False, **options: Any,
) -> dict:
    """Resolve the configuration (profile < YAML < options), train, return the summary."""
    if stage == "pretrain" and options.get("method") in (None, "ideal"):
        options["method"] = "ideal-pretrain"
    cfg = resolve_config(stage, profile, config, {**options, "dataset": str(dataset)})
    trainer = Trainer(cfg, out, resume=resume, overwrite=overwrite)
    summary = trainer.fit()
    summary["run"] = str(out)
    return summary


def train(
    dataset: str | Path, out: str | Path, *, pretrain_method: str = "ideal-pretrain", method: str = "ideal",
    skip_pretrain: bool = False, **kwargs: Any,
) -> dict:
    """Pre-train into OUT/pretrain, then fine-tune from it into OUT/finetune."""
    out = Path(out)
    if kwargs.get("init"):
        raise IdealsegError("`train` pre-trains itself; use `finetune --init` to start from another run")
    summaries = {}
    if not skip_pretrain:
        summaries["pretrain"] = run_stage("pretrain", dataset, out / "pretrain", method=pretrain_method,
                                          **{k: v for k, v in kwargs.items() if k != "labeled"})
        kwargs["init"] = str(out / "pretrain")
    summaries["finetune"] = run_stage("finetune", dataset, out / "finetune", method=method, **kwargs)
    pre = summaries.get("pretrain", {}).get("seconds", 0.0)
    summaries["total_train_seconds"] = round(pre + summaries["finetune"]["seconds"], 1)
    return summaries
