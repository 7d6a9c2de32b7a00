"""Stage runners behind the CLI: pretrain, finetune, and train (both, in one folder)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from idealseg import checks
from idealseg.config import RunConfig, read_yaml, reads, resolve_config
from idealseg.config.resume_rules import FROM_PRETRAINING, NOT_RESUMED
from idealseg.engine import distributed
from idealseg.engine.run_setup import setup_run
from idealseg.engine.trainer import Trainer
from idealseg.errors import IdealsegError, InputError
from idealseg.methods import METHODS
from idealseg.ownership import check_not_link, check_replaceable, read_manifest, replace_folder, write_manifest
from idealseg.runfolder.folder import is_run_folder
from idealseg.writer_lock import writer_lock


def run_stage(
    stage: str, dataset: str | Path, out: str | Path, *, profile: str | None = None, config: str | None = None,
    resume: bool = False, overwrite: bool = False, **options: Any,
) -> dict:
    """Resolve the configuration (profile < YAML < options), train, return the summary."""
    dataset, out, config = _paths(dataset, out, config)
    check_not_link(out)  # before its config.yaml is read: a link's target is not this run's
    resume, overwrite = checks.resume_or_overwrite(resume, overwrite)
    cfg = stage_config(stage, dataset, profile, config, options, resumed=Path(out) if resume else None)
    ctx = distributed.setup(cfg.device)
    with contextlib.ExitStack() as held:
        _lock(held, ctx, out)
        return _fit(ctx, lambda: Trainer(cfg, out, resume=resume, overwrite=overwrite), out)


def _lock(held: contextlib.ExitStack, ctx: distributed.Context, out: Path) -> None:
    """One writer per run folder: under torchrun rank 0 alone writes it, so rank 0 alone holds the lock,
    and a lock it cannot take stops every rank."""
    with distributed.together(ctx):
        if ctx.is_main:
            held.enter_context(writer_lock(out))


def _fit(ctx: distributed.Context, trainer: Callable[[], Trainer], out: Path) -> dict:
    """Build the trainer and train, in a locked run folder; the summary names the folder."""
    # under torchrun the process group stays joined from stage to stage (engine/distributed.py says
    # why); named_errors: a rank stuck or gone in DDP's or the losses' collectives ends with one line
    with distributed.named_errors():
        summary = trainer().fit()
    summary["run"] = str(out)
    return summary


def stage_config(stage: str, dataset: str | Path, profile: str | None, config: str | None,
                 options: dict[str, Any], resumed: Path | None = None,
                 recorded: dict[str, Any] | None = None) -> RunConfig:
    """A stage's resolved configuration, with absolute paths (a run folder then means the same thing
    from any working directory). `resumed`: the run folder a --resume continues, whose recorded
    options stand where neither the YAML nor the command line names one (`recorded`: those options,
    where the caller read them already)."""
    options = {k: v for k, v in options.items() if not (k == "method" and v is None)}
    if stage == "pretrain" and options.get("method") == "ideal":
        options["method"] = "ideal-pretrain"
    if options.get("init"):
        options["init"] = str(checks.path(options["init"], "--init").resolve())
    if recorded is None:
        recorded = recorded_options(resumed, stage, profile, config,
                                    [k for k, v in options.items() if v is not None]) if resumed else {}
    return resolve_config(stage, profile, config, {**options, "dataset": str(Path(dataset).resolve())}, recorded)


def _paths(dataset: Any, out: Any, config: Any) -> tuple[Path, Path, Path | None]:
    """The dataset, run folder and --config of a stage, as paths (the API may be handed anything)."""
    return checks.path(dataset, "DATASET"), checks.output_path(out, "--out"), checks.optional_path(config, "--config")


def recorded_options(run_dir: str | Path, stage: str, profile: str | None, config: str | None,
                     given: Iterable[str] = ()) -> dict[str, Any]:
    """The options a resumed run was started with, to continue it as it began: a newer idealseg may
    have changed a default since (`train`'s method, the cpu profile's optimiser), and a run should not
    change course or be refused for a setting its user never chose. Only idealseg's run folders of
    this stage and a known method are read, and only under the profile they were started with (a
    profile named anew starts from its own defaults, and the resume check names what differs)."""
    recorded = Path(run_dir) / "config.yaml"
    if not recorded.is_file() or not is_run_folder(Path(run_dir)):  # a user's folder: refused later, saying why
        return {}
    old = RunConfig.load(recorded)  # its unknown keys, wrong types and unknown method: one line naming it
    if old.stage != stage:
        raise InputError(recorded, f"records a {old.stage} run; resume it with `idealseg {old.stage}`, or choose "
                                   f"a new run folder for {stage}")
    if METHODS[old.method].stage != stage:
        raise InputError(recorded, f"method {old.method!r} is a {METHODS[old.method].stage} method, but its stage "
                                   f"is {stage}: config.yaml was edited; put back the method the run was started with")
    named = profile or (read_yaml(config).get("profile") if config else None)
    if named and named != old.profile:
        return {"method": old.method}
    kept = {f.name: getattr(old, f.name) for f in fields(old) if f.name not in NOT_RESUMED}
    chosen = {k.replace("-", "_") for k in given} | (set(map(str, read_yaml(config))) if config else set())
    return _this_machine(kept, read_yaml(recorded), chosen, recorded)


def _this_machine(kept: dict[str, Any], written: dict, chosen: set[str], recorded: Path) -> dict[str, Any]:
    """The machine options a resumed run recorded (threads, device) are where it trained, not refusals
    here: more threads than this machine has cores run at torch's default (its cores, or
    OMP_NUM_THREADS), a device this machine lacks gives way to the profile's; one line each, unless
    the command or --config chose the option anew."""
    was = written.get("threads")
    if isinstance(was, int) and was > (os.cpu_count() or 1) and "threads" not in chosen:
        warnings.warn(f"{recorded}: threads {was} is more than this machine's {os.cpu_count()} cores; resuming "
                      "with torch's default (the cores, or OMP_NUM_THREADS; --threads N to choose)", stacklevel=4)
    if "device" in kept and "device" not in chosen:
        try:
            checks.device(kept["device"])
        except IdealsegError as exc:
            warnings.warn(f"{recorded}: {exc}; resuming on this machine's default device (--device to choose)",
                          stacklevel=4)
            del kept["device"]
    return kept


def _remove_if_empty(folder: Path) -> None:
    """Remove `folder` if nothing is in it (a folder with anything in it is left as it is)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def _named_method(config: Path | None, recorded: dict[str, Any]) -> str:
    """Fine-tuning's method where the command names none: the --config YAML's, else the resumed run's,
    else RunConfig's default; what resolve_config would choose, known before the options are split
    between the two stages."""
    named = read_yaml(config).get("method") if config else None
    return named if isinstance(named, str) else recorded.get("method") or RunConfig.method


def _pretraining_record(out: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`train --resume` killed during or right after pre-training: the options its fine-tuning must
    share with the pre-training that ran (else it would fall back to the cpu profile's, silently)."""
    pre = out / "pretrain"
    if (out / "finetune" / "config.yaml").is_file() or not (pre / "config.yaml").is_file() or not is_run_folder(pre):
        return {}
    recorded = RunConfig.load(pre / "config.yaml")
    named = {k for k, v in kwargs.items() if v is not None} | (set(read_yaml(kwargs["config"])) if kwargs.get("config")
                                                                else set())
    return {k: getattr(recorded, k) for k in FROM_PRETRAINING if k not in named}


def train(
    dataset: str | Path, out: str | Path, *, pretrain_method: str = "ideal-pretrain", method: str | None = None,
    skip_pretrain: bool = False, **kwargs: Any,
) -> dict:
    """Pre-train into OUT/pretrain, then fine-tune from it into OUT/finetune (`method`: the --config
    YAML's, else bcp: IDEAL's dense pre-training under BCP's fine-tuning led every IDEAL-based recipe
    on ACDC validation at 1, 3 and 7 labelled patients, docs/benchmarks.md)."""
    dataset, out, kwargs["config"] = _paths(dataset, out, kwargs.get("config"))
    kwargs["resume"], kwargs["overwrite"] = checks.resume_or_overwrite(kwargs.get("resume", False),
                                                                       kwargs.get("overwrite", False))
    skip_pretrain = checks.flag(skip_pretrain, "--no-pretrain")
    check_not_link(out)
    resumed = out / "finetune" if kwargs.get("resume") else None
    if resumed:
        kwargs.update(_pretraining_record(out, kwargs))
    recorded = (recorded_options(resumed, "finetune", kwargs.get("profile"), kwargs.get("config"),
                                 [k for k, v in kwargs.items() if v is not None]) if resumed else {})
    method = method or _named_method(kwargs.get("config"), recorded)
    if kwargs.get("init"):
        raise IdealsegError("`train` pre-trains itself; use `finetune --init` to start from another run")
    summaries = {}
    run_options = {"profile", "config", "resume", "overwrite"}
    pre_kwargs = {k: v for k, v in kwargs.items() if k in run_options or reads(k, "pretrain", pretrain_method)}
    ft_kwargs = {k: v for k, v in kwargs.items() if k in run_options or reads(k, "finetune", method)}
    unread = sorted(set(kwargs) - set(pre_kwargs) - set(ft_kwargs))
    if unread:
        raise IdealsegError(f"option(s) {', '.join(unread)} are read by neither {pretrain_method} nor {method}")
    if not skip_pretrain:
        ft_kwargs["init"] = str(out / "pretrain")
    run = {k: ft_kwargs.pop(k) for k in run_options if k in ft_kwargs}
    ft_cfg = stage_config("finetune", dataset, run.get("profile"), run.get("config"), {**ft_kwargs, "method": method},
                          recorded=recorded)
    ctx = distributed.setup(ft_cfg.device)
    with contextlib.ExitStack() as held:
        if not out.exists():  # a refused train leaves no OUT behind (the lock's folder goes with its lock)
            held.callback(_remove_if_empty, out)
        # the fine-tuning folder is locked and checked before pre-training touches anything (a refused
        # resume or a foreign file must not leave a changed pre-training behind), and stays locked, so
        # that what was checked is what fine-tuning finds
        _lock(held, ctx, out / "finetune")
        with distributed.together(ctx):
            ft_setup = setup_run(ft_cfg, out / "finetune", run.get("resume", False), run.get("overwrite", False))
        if not skip_pretrain:
            summaries["pretrain"] = run_stage("pretrain", dataset, out / "pretrain", method=pretrain_method,
                                              **pre_kwargs)
        summaries["finetune"] = _fit(ctx, lambda: Trainer(ft_setup), out / "finetune")
    pre = summaries.get("pretrain", {}).get("seconds", 0.0)
    summaries["total_train_seconds"] = round(pre + summaries["finetune"]["seconds"], 1)
    return summaries


def demo(out: str | Path = "idealseg-demo", patients: int = 10, labeled: int = 2, overwrite: bool = False,
         resume: bool = False, profile: str = "demo", method: str | None = None) -> Path:
    """The main job on the embedded default: phantom -> IDEAL pre-training -> fine-tuning (`train`'s
    default recipe) -> test report."""
    out = checks.output_path(out, "--out")
    resume, overwrite = checks.resume_or_overwrite(resume, overwrite)
    patients, labeled = _demo_sizes(patients, labeled)
    check_not_link(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        check_replaceable(out, "demo")  # the user's own folder is never resumed into nor deleted
        if not (overwrite or resume):
            raise IdealsegError(f"{out}: exists (pass --resume to continue it or --overwrite to start again)")
    with writer_lock(out):
        if overwrite and read_manifest(out):
            replace_folder(out, None, "demo")  # checked again as it is moved aside
        write_manifest(out, "demo")  # its dataset and run folders carry their own manifests
        return _demo_stages(out, patients, labeled, resume, profile, method)


def _demo_sizes(patients: Any, labeled: Any) -> tuple[int, int]:
    """The demo's phantom and label budget, checked before its folder is made: the phantom splits its
    patients 60/20/20 (at least one for validation and one for testing, importers/phantom.py), and the
    demo reports on its test split, so it needs 3 patients, and at most the train split's as labelled."""
    patients = checks.whole_number(patients, "--patients", 3)
    train = patients - 2 * max(1, round(patients * 0.2))
    labeled = checks.whole_number(labeled, "--labeled", 1)
    if labeled > train:
        raise IdealsegError(f"--labeled {labeled}: asks for {labeled} patients but the phantom's train split has "
                            f"{train} (of --patients {patients})")
    return patients, labeled


def _demo_stages(out: Path, patients: int, labeled: int, resume: bool, profile: str, method: str | None) -> Path:
    """The demo's steps in its (locked) folder, each skipped when an earlier demo finished it."""
    from idealseg.data.prepare import prepare
    from idealseg.evaluation.evaluate import evaluate_run
    from idealseg.evaluation.report import write_report

    dataset = out / "dataset"
    if not (dataset / "dataset.json").exists():
        prepare("phantom", out=dataset, patients=patients, seed=0)
    run = out / "run"
    done = (run / "finetune" / "summary.json").exists()
    if not done:
        train(dataset, run, profile=profile, labeled=str(labeled), resume=resume or run.exists(), overwrite=False,
              method=method)
    evaluate_run(run, "test")
    return write_report(run, "test")
