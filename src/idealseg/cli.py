"""The command line: each subcommand parses its options and calls one library function."""

from __future__ import annotations

import os
import sys

from idealseg import __version__
from idealseg.errors import IdealsegError
from idealseg.plugins import load_plugins
from idealseg.signals import CommandSignals

TYPE_CHECKING = False  # imported before main() can take Ctrl-C: only what Python has loaded already
if TYPE_CHECKING:
    import argparse

PREPARE_USAGE = "idealseg prepare {ssl4mis,acdc,nifti} SRC OUT [options]"
PREPARE_PHANTOM_USAGE = "idealseg prepare phantom OUT [--patients N] [--seed S]"


def _cmd_prepare(args: argparse.Namespace) -> None:
    from idealseg.data.importers.registry import get_importer
    from idealseg.data.prepare import prepare

    if not get_importer(args.source).needs_src:
        out, src = args.paths[-1], None
        if len(args.paths) != 1:
            raise IdealsegError(f"usage: {PREPARE_PHANTOM_USAGE.replace('phantom', args.source)}")
    else:
        if len(args.paths) != 2:
            raise IdealsegError(f"usage: {PREPARE_USAGE}")
        src, out = args.paths
    classes = args.classes.split(",") if args.classes else None
    path = prepare(
        args.source, src, out, overwrite=args.overwrite, patients=args.patients, seed=args.seed,
        normalization=args.normalize, label_map=args.label_map, classes=classes,
        val=args.val, test=args.test, spacing_from=args.spacing_from, patient_regex=args.patient_regex,
        unlabeled=args.unlabeled, unlabeled_scale_from=args.unlabeled_scale_from, scale_chooser=_scale_chooser(args),
    )
    print(f"wrote {path}")


def _scale_chooser(args: argparse.Namespace):
    """A run's scale search for --unlabeled-scale-from (loaded only then: prepare loads no model otherwise)."""
    if args.unlabeled_scale_from is None:
        return None
    from idealseg.inference.rescale import scale_chooser

    return scale_chooser


def _cmd_info(args: argparse.Namespace) -> None:
    from idealseg.data.dataset import Dataset
    from idealseg.data.info import dataset_summary

    print(dataset_summary(Dataset(args.dataset), args.labeled, args.seed))


def _flag_type(annotation: str):
    """argparse type for a RunConfig field: its annotation, with lists as comma-separated values."""
    if annotation.startswith("tuple[int"):
        return _whole_numbers
    if annotation == "bool":
        return lambda text: {"true": True, "false": False}.get(text.lower(), text)
    return {"int": int, "float": float}.get(annotation, str)


def _whole_numbers(text: str) -> list[int]:
    """A comma-separated list flag (--channels 16,32,64,128,256); argparse prints the message on one line."""
    import argparse

    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, e.g. 16,32,64,128,256; "
                                          f"got {text!r}") from None


def _train_flags() -> dict[str, str]:
    """RunConfig fields that are command-line flags, with their annotations (config.OPTIONS says which)."""
    from dataclasses import fields

    from idealseg.config import OPTIONS, RunConfig

    return {f.name: str(f.type) for f in fields(RunConfig) if OPTIONS[f.name].cli}


def _add_train_options(p: argparse.ArgumentParser, stage: str, method_default: str,
                       help_profile: str | None = None, both_stages: bool = False) -> None:
    from idealseg.config import OPTIONS, PROFILES, method_names
    from idealseg.config.profiles import profile_value

    p.add_argument("dataset", help="dataset folder written by `idealseg prepare`")
    p.add_argument("--out", required=True, help="run folder to write")
    names = method_names(stage)
    p.add_argument("--method", default=None,
                   help=f"one of {', '.join(names)} (default: the --config YAML's method, else with --resume the "
                        f"run's own, else {method_default})")
    p.add_argument("--profile", default=None, help=f"one of {', '.join(PROFILES)}: the defaults the options start "
                                                   "from (default: the --config YAML's profile, else with --resume "
                                                   "the run's own, else cpu)")
    p.add_argument("--config", help="YAML file of options (any option below, by its name with underscores)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start again in a run folder idealseg wrote")
    profile = help_profile if help_profile in PROFILES else "cpu"
    groups = {title: p.add_argument_group(f"{title} ({profile} profile's values; --profile NAME --help shows "
                                          "another's)" if title == HELP_GROUPS[0][0] else title)
              for title, _ in HELP_GROUPS}
    groups["method options"] = p.add_argument_group("method options (read only by the methods named)")
    for name, annotation in _train_flags().items():
        option = OPTIONS[name]
        text = option.help + (f"; one of {', '.join(option.choices)}" if option.choices else "")
        if option.readers:
            text += f" [read by {', '.join(option.readers)}]"
        if annotation == "bool":
            text += " (true or false)"
        value, before = profile_value(profile, stage, name), profile_value(profile, "pretrain", name)
        if both_stages and before != value:  # train: a flag sets both stages; their defaults differ
            text += f" (default: fine-tuning {_shown(value)}, pre-training {_shown(before)})"
        else:
            text += f" (default: {_shown(value)})"
        group = next((title for title, names in HELP_GROUPS if name in names), None)
        if group is None:
            group = "method options" if set(option.readers) - {"pretrain", "finetune"} else HELP_GROUPS[0][0]
        groups[group].add_argument("--" + name.replace("_", "-"), dest=name, type=_flag_type(annotation),
                                   default=None, metavar=name.upper(), help=text.replace("%", "%%"))


# how `--help` of pretrain, finetune and train groups the run options (the rest: the experiment, or the
# method options where only some methods read them)
HELP_GROUPS = (
    ("experiment", ("labeled", "seed", "fold", "init")),
    ("data and model", ("input_size", "channels", "target_spacing", "augmentation", "sup_loss")),
    ("budget and optimiser", ("iterations", "time_budget", "batch_labeled", "batch_unlabeled", "optimizer", "lr",
                              "weight_decay", "poly_power")),
    ("machine and bookkeeping", ("device", "threads", "amp", "compile", "channels_last", "sync_bn", "val_every",
                                 "checkpoint_every", "log_every")),
)


def _shown(value) -> str:
    """A default as a user types it on the command line."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def _help_profile(argv: list[str] | None) -> str | None:
    """The --profile a `--help` asks about, so that the help shows that profile's values."""
    argv = sys.argv[1:] if argv is None else argv
    if "-h" not in argv and "--help" not in argv:
        return None
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--profile="):
            return arg.split("=", 1)[1]
    return None


def _train_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {name: getattr(args, name) for name in _train_flags() if getattr(args, name, None) is not None}
    return dict(profile=args.profile, config=args.config, resume=args.resume, overwrite=args.overwrite, **kwargs)


def _method(args: argparse.Namespace) -> dict:
    """--method only when given, so that a --config YAML's `method:` is not overridden by a default."""
    return {"method": args.method} if args.method else {}


def _print_summary(summary: dict) -> None:
    import json

    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(json.dumps(summary, indent=1))


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from idealseg.pipeline import run_stage

    opts = _train_kwargs(args)
    opts.pop("labeled", None)
    _print_summary(run_stage("pretrain", args.dataset, args.out, **_method(args), **opts))


def _cmd_finetune(args: argparse.Namespace) -> None:
    from idealseg.pipeline import run_stage

    _print_summary(run_stage("finetune", args.dataset, args.out, **_method(args), **_train_kwargs(args)))


def _cmd_train(args: argparse.Namespace) -> None:
    from idealseg.pipeline import train

    _print_summary(train(args.dataset, args.out, method=args.method, pretrain_method=args.pretrain_method,
                         skip_pretrain=args.no_pretrain, **_train_kwargs(args)))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from idealseg.evaluation.evaluate import evaluate_run, markdown_table

    if args.labels is not None:
        _score_masks(args)
        return
    if args.classes is not None:
        raise IdealsegError("--classes: for masks scored with --labels; a run's classes are its dataset's")
    args.split = args.split or "val"
    summary = evaluate_run(args.run, args.split, args.dataset, args.checkpoint or "last", args.out, args.tta,
                           _device(args),
                           largest_component=args.largest_component, amp=args.amp, scale_search=args.scale_search)
    print(markdown_table(summary))
    print(f"{summary['volumes']} volumes in {summary['seconds']} s; wrote {summary['run']}/eval_{args.split}"
          if not args.out else f"wrote {args.out}")


def _score_masks(args: argparse.Namespace) -> None:
    """`evaluate MASKS --labels LABELS`: masks of any tool scored as a run's are (the run-only flags refused)."""
    from idealseg.evaluation.evaluate import markdown_table
    from idealseg.evaluation.score_folder import score_folder

    run_only = [flag for flag, value in (("--dataset", args.dataset), ("--tta", args.tta),
                                         ("--largest-component", args.largest_component), ("--amp", args.amp),
                                         ("--scale-search", args.scale_search), ("--checkpoint", args.checkpoint))
                if value not in (None, False)]
    if run_only or args.split is not None:
        raise IdealsegError(f"{', '.join(run_only) or '--split'}: for a run folder, not for masks scored with --labels")
    _device(args)  # --threads is checked and applied (the metrics run on the CPU)
    summary = score_folder(args.run, args.labels, args.out, args.classes.split(",") if args.classes else None)
    print(markdown_table(summary))
    extra = summary["unpaired_masks"]
    print(f"{summary['volumes']} volumes" + (f"; {extra} mask{'s' * (extra != 1)} without a label, not scored"
                                             if extra else "") + (f"; wrote {args.out}" if args.out else ""))


def _add_compute_flags(p: argparse.ArgumentParser) -> None:
    """--device and --threads for the commands that run a trained model (training takes them as options)."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: CUDA where there is one)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")


def _device(args: argparse.Namespace) -> str:
    """The checked device of a command that runs a model, after setting its CPU threads."""
    from idealseg import checks
    from idealseg.config.options import max_threads

    threads = checks.whole_number(args.threads, "--threads", 0)
    if threads > max_threads():
        raise IdealsegError(f"--threads {threads}: at most {max_threads()} (4x this machine's cores)")
    if threads:
        import torch

        torch.set_num_threads(threads)
    return checks.device(args.device)


def _cmd_report(args: argparse.Namespace) -> None:
    from idealseg.evaluation.report import write_report

    out = write_report(args.run, args.split, args.cases, _device(args))
    print(f"wrote {out / 'report.md'} and its figures")


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from idealseg.benchmark import run_benchmark
    from idealseg.checks import seeds_text

    seeds = seeds_text(args.seeds) if args.seeds else None
    root = run_benchmark(args.config, args.out, args.only.split(",") if args.only else None, args.report_only,
                         seeds=seeds, labeled=args.labeled.split(",") if args.labeled else None)
    print((root / "report.md").read_text() if (root / "report.md").exists() else f"no results in {root}")


def _cmd_predict(args: argparse.Namespace) -> None:
    from idealseg.inference.predict import predict_files

    written = predict_files(args.run, args.input, args.out, args.checkpoint, args.tta, _device(args),
                            overwrite=args.overwrite, largest_component=args.largest_component,
                            scale_search=args.scale_search, ensemble=args.ensemble)
    print(f"wrote {len(written)} mask(s) to {args.out}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from idealseg.pipeline import demo

    report = demo(args.out, args.patients, args.labeled, args.overwrite, args.resume, args.profile, args.method)
    print((report / "report.md").read_text())
    print(f"report and figures: {report}")


def build_parser(help_profile: str | None = None) -> argparse.ArgumentParser:
    """The argparse tree of every subcommand (its `--help` is the CLI's reference; the run options show
    `help_profile`'s values, else the cpu profile's)."""
    import argparse

    parser = argparse.ArgumentParser(prog="idealseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"idealseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "prepare", help="import scans into a dataset folder",
        usage=f"{PREPARE_USAGE}\n       {PREPARE_PHANTOM_USAGE}",
    )
    from idealseg.data.importers.registry import importer_names

    p.add_argument("source", choices=importer_names(),
                   help="ssl4mis: SSL4MIS's ACDC h5 files; acdc: the ACDC NIfTI release; "
                   "nifti: imagesTr/labelsTr/imagesTs; phantom: the synthetic cardiac phantom; any other "
                   "registered importer (idealseg.data.importers)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="SRC OUT (phantom: OUT only)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an OUT that idealseg wrote (never a folder holding other files, nor an input)")
    p.add_argument("--patients", type=int, default=20, help="phantom: number of patients")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--normalize", choices=["percentile", "minmax"], default="percentile")
    p.add_argument("--label-map", help="nifti: SRC:DST code map, e.g. 205:1,420:2")
    p.add_argument("--classes", help="nifti: comma-separated class names, background first")
    p.add_argument("--val", help="acdc/nifti: val patients as 20%%, a count, ids a,b or @file (nifti default: a "
                                 "fifth of the labelled patients, at least one; 0 for none)")
    p.add_argument("--test", help="acdc/nifti: test patients taken from the labelled training scans, same forms as "
                                  "--val (imagesTs is always the test split)")
    p.add_argument("--unlabeled", metavar="DIR",
                   help="any source: also take the NIfTI scans of DIR (or DIR/imagesTr; labels never read) as "
                        "unlabelled training scans, e.g. another centre's, for pre-training and semi-supervision")
    p.add_argument("--unlabeled-scale-from", metavar="RUN",
                   help="store each --unlabeled scan at the multiple of its header's in-plane spacing that RUN's "
                        "predict would segment it at (its scale search), so training sees that centre's anatomy "
                        "at the size prediction will; for a centre whose headers misstate the anatomy's size")
    p.add_argument("--patient-regex", help="nifti: a regular expression whose first group (or group 'patient') is "
                                           "a scan's patient, e.g. '(.+)_frame'; default: a _frameNN, _ED/_ES or "
                                           "_tN suffix is not part of the patient")
    p.add_argument("--spacing-from", metavar="DIR",
                   help="ssl4mis: the same patients as released (patientXXX/*.nii.gz): take each one's spacing")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("info", help="summarise a dataset folder")
    p.add_argument("dataset")
    p.add_argument("--labeled", help="show what this label budget selects")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("pretrain", help="contrastive pre-training of the encoder (labels never read)")
    _add_train_options(p, "pretrain", "ideal-pretrain", help_profile)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("finetune", help="semi-supervised fine-tuning (or a baseline method)")
    _add_train_options(p, "finetune", "bcp", help_profile)
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("train", help="pretrain then finetune, into OUT/pretrain and OUT/finetune")
    _add_train_options(p, "finetune", "bcp", help_profile, both_stages=True)
    p.add_argument("--pretrain-method", default="ideal-pretrain")
    p.add_argument("--no-pretrain", action="store_true", help="fine-tune from scratch (ablation)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="Dice, HD95, ASD per volume and class on a split, or of any tool's masks")
    p.add_argument("run", help="fine-tuning run folder (or a `train` folder); with --labels, a folder of masks")
    p.add_argument("--labels", help="score the NIfTI masks in RUN (made by any tool) against this folder of labels, "
                                    "paired by case name; HD95 and ASD in mm from the labels' headers")
    p.add_argument("--classes", help="with --labels: class names from background, e.g. background,RV,Myo,LV")
    p.add_argument("--split", default=None, choices=["train", "val", "test"], help="default: val")
    p.add_argument("--dataset", help="dataset folder (default: the one the run was trained on)")
    p.add_argument("--checkpoint", default=None, choices=["last", "best"], help="default: last")
    p.add_argument("--out", help="output folder (default RUN/eval_SPLIT; with --labels: none, the table is printed)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--largest-component", action=argparse.BooleanOptionalAction, default=None,
                   help="keep each class's largest 3D connected component (removes stray false positives); "
                        "default: as the run's validation chose (summary.json)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast where the device has it (CUDA, CPUs with native bfloat16); "
                        "default: as the run trained (its amp option)")
    p.add_argument("--scale-search", action=argparse.BooleanOptionalAction, default=False,
                   help="segment each scan at the scale the model is most confident at, as `predict` does "
                        "(default: off, each scan at its header's spacing, as benchmarks score)")
    _add_compute_flags(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", help="a run's curves, evaluation tables and overlays with a colour key, in RUN/report")
    p.add_argument("run", help="fine-tuning run folder (or a `train` folder)")
    p.add_argument("--split", default=None, choices=["train", "val", "test"],
                   help="split whose labelled volumes the overlays show (default: test, else val, else train)")
    p.add_argument("--cases", type=int, default=2, help="volumes shown as overlays (default 2)")
    _add_compute_flags(p)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("predict", help="segment NIfTI scans; masks keep the input's geometry")
    p.add_argument("run", help="fine-tuning run folder (or a `train` folder)")
    p.add_argument("input", help="a .nii/.nii.gz file or a folder of them")
    p.add_argument("out", help="output folder (or a .nii.gz name for a single input)")
    p.add_argument("--checkpoint", default="last", choices=["last", "best"])
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation")
    p.add_argument("--largest-component", action=argparse.BooleanOptionalAction, default=None,
                   help="keep each class's largest 3D connected component (removes stray false positives); "
                        "default: as the run's validation chose (summary.json)")
    p.add_argument("--scale-search", action=argparse.BooleanOptionalAction, default=True,
                   help="segment each scan at the multiple of its header's spacing (0.5 to 1.3) the model is most "
                        "confident at, for scans whose anatomy is not at the size their header implies (another "
                        "centre's export); default: on, for a model in physical space")
    p.add_argument("--overwrite", action="store_true", help="replace masks that exist in OUT (never an input)")
    p.add_argument("--ensemble", action="append", metavar="RUN", default=None,
                   help="another run of the same experiment (a fold, a seed) whose probabilities are averaged "
                        "with RUN's; repeat for more (nnU-Net's ensemble of folds)")
    _add_compute_flags(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("demo", help="phantom -> IDEAL pre-training -> fine-tuning (2 labelled) -> test report, minutes")
    p.add_argument("--out", default="idealseg-demo")
    p.add_argument("--patients", type=int, default=10)
    p.add_argument("--labeled", type=int, default=2)
    p.add_argument("--profile", default="demo", help="demo (default) or tiny (seconds, for smoke tests)")
    p.add_argument("--method", default=None, help="the fine-tuning method (default: train's, bcp; ideal for the "
                                                  "paper's)")
    p.add_argument("--overwrite", action="store_true", help="start again in a demo folder idealseg wrote")
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("benchmark", help="methods x label budgets x seeds, resumable")
    p.add_argument("config", help="benchmark YAML, e.g. benchmarks/configs/acdc_cpu.yaml")
    p.add_argument("--out", help="results folder (default: the YAML's `out`)")
    p.add_argument("--only", help="comma-separated method names to run")
    p.add_argument("--seeds", help="comma-separated seeds to run now (default: every seed of the YAML)")
    p.add_argument("--labeled", help="comma-separated label budgets to run now, e.g. ssl4mis:7 (default: all)")
    p.add_argument("--report-only", action="store_true", help="rewrite results.csv/report.md from finished cells")
    p.set_defaults(func=_cmd_benchmark)
    return parser


def _one_line(message: str) -> str:
    """A message as one line: a newline in a path (or anywhere) written as \\n."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def _close_bars() -> None:
    """End any progress bar still drawn (the trainer's, when it raised), so that what follows starts a
    line of its own instead of being glued after the bar's last `\\r` redraw."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar on a closed stream: nothing more to clear
            pass


def _error(command: str, message: str) -> None:
    """One line on stderr; under torchrun only rank 0 says it (every rank fails alike)."""
    _close_bars()
    if os.environ.get("RANK", "0") == "0":
        print(f"idealseg {command}: error: {_one_line(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line and return 2, never a traceback; Ctrl-C prints
    "interrupted" and returns 130 (SIGTERM: 143) at any moment, the parser's imports included."""
    signals, args = None, None
    try:
        try:
            signals = CommandSignals(owner=argv is None)
            load_plugins()  # your own methods and importers, before the parser lists them
            args = build_parser(_help_profile(argv)).parse_args(argv)
            import warnings

            warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {_one_line(str(msg))}\n"
            args.func(args)
        except IdealsegError as exc:
            signals.ended()
            _error(getattr(args, "command", "?"), str(exc))
            return 2
        except OSError as exc:  # disk full, read-only folder, permission denied: the path and the cause
            signals.ended()
            where = f"{exc.filename}: " if exc.filename else ""
            _error(getattr(args, "command", "?"), f"{where}{exc.strerror or exc}")
            return 2
        except SystemExit:  # argparse's usage error, --help, --version
            signals.ended()
            raise
        signals.ended()
        return 0
    except KeyboardInterrupt:  # while the command ran, or while it reported its error
        if signals is not None:
            signals.ended()
        _close_bars()
        print("interrupted", file=sys.stderr)
        return signals.code() if signals is not None else 130
    finally:
        if signals is not None:
            signals.restore()
