"""The command line: each subcommand parses its options and calls one library function."""

from __future__ import annotations

import argparse
import sys
import warnings

from idealseg import __version__
from idealseg.errors import IdealsegError


def _cmd_prepare(args: argparse.Namespace) -> None:
    from idealseg.data.prepare import prepare

    if args.source == "phantom":
        out, src = args.paths[-1], None
        if len(args.paths) != 1:
            raise IdealsegError("usage: idealseg prepare phantom OUT [--patients N --seed S]")
    else:
        if len(args.paths) != 2:
            raise IdealsegError(f"usage: idealseg prepare {args.source} SRC OUT")
        src, out = args.paths
    classes = args.classes.split(",") if args.classes else None
    path = prepare(
        args.source, out, src, overwrite=args.overwrite, patients=args.patients, seed=args.seed,
        normalization=args.normalize, label_map=args.label_map, classes=classes,
        val=args.val, test=args.test,
    )
    print(f"wrote {path}")


def _cmd_info(args: argparse.Namespace) -> None:
    from idealseg.data.dataset import Dataset
    from idealseg.data.info import dataset_summary

    print(dataset_summary(Dataset(args.dataset), args.labeled, args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idealseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"idealseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="import scans into a dataset folder")
    p.add_argument("source", choices=["ssl4mis", "acdc", "nifti", "phantom"])
    p.add_argument("paths", nargs="+", metavar="SRC OUT")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--patients", type=int, default=20, help="phantom: number of patients")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--normalize", choices=["percentile", "minmax"], default="percentile")
    p.add_argument("--label-map", help="nifti: SRC:DST code map, e.g. 205:1,420:2")
    p.add_argument("--classes", help="nifti: comma-separated class names, background first")
    p.add_argument("--val", help="acdc/nifti: val patients as 20%%, a count, ids a,b or @file")
    p.add_argument("--test", help="acdc/nifti: test patients, same forms as --val")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("info", help="summarise a dataset folder")
    p.add_argument("dataset")
    p.add_argument("--labeled", help="show what this label budget selects")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        args.func(args)
    except IdealsegError as exc:
        print(f"idealseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
