"""The command line's own surface: every subcommand documents itself."""

from __future__ import annotations

import argparse

import pytest

from idealseg.cli import build_parser

SUBCOMMANDS = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_help_prints(command, capsys):
    """argparse %-formats help strings, so a bare '%' in one crashed `--help` (it did for train)."""
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and command in out.splitlines()[0]


def test_prepare_usage_names_both_forms(capsys):
    """`prepare` takes SRC OUT, except phantom (OUT only); argparse's own line said 'SRC OUT [SRC OUT ...]'."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert "prepare {ssl4mis,acdc,nifti} SRC OUT" in usage and "prepare phantom OUT" in usage
