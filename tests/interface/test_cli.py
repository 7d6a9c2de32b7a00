"""The command line's own surface: every subcommand documents itself."""

from __future__ import annotations

import argparse

import pytest

from idealseg.cli import build_parser, main

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


def _options_doc():
    """scripts/options_doc.py, the generator of docs/options.md, as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "options_doc.py"
    spec = importlib.util.spec_from_file_location("options_doc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_method_declarations_are_known_without_torch_as_imported():
    """The registry's table (read without torch) must agree with the imported classes."""
    from idealseg.config.method_registry import method_entries
    from idealseg.config.options import OPTIONS
    from idealseg.methods import METHODS

    assert {n: e.reads for n, e in method_entries().items() if n in METHODS} == {
        name: cls.reads for name, cls in METHODS.items()}
    assert all(key in OPTIONS for cls in METHODS.values() for key in cls.reads)


def test_every_option_is_defined_once_and_documented():
    """One table (config.OPTIONS) drives the YAML checks, the CLI flags and docs/options.md."""
    from dataclasses import fields
    from pathlib import Path

    from idealseg.config import OPTIONS, RunConfig, method_names
    from idealseg.methods import METHODS

    options_markdown = _options_doc().options_markdown

    assert [f.name for f in fields(RunConfig)] == list(OPTIONS)
    assert method_names() == sorted(METHODS)
    readers = {r for o in OPTIONS.values() for r in o.readers}
    assert readers <= set(METHODS) | {"pretrain", "finetune"}, readers - set(METHODS)
    docs = Path(__file__).resolve().parents[2] / "docs" / "options.md"
    assert docs.read_text() == options_markdown(), "docs/options.md is stale: run scripts/options_doc.py"


def test_help_lists_methods_profiles_and_choices(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "one of bcp, cps, ideal, mean-teacher, supervised, unimatch" in out
    assert "one of cpu, gpu, demo, tiny" in out and "sgd (momentum 0.9) or adam; one of sgd, adam" in out
    assert "[read by bcp]" in out  # labeled_warmup names its reader


def test_unread_option_is_named_dataset_options_refused_yaml_profile_honoured(phantom, tmp_path):
    from idealseg.config import resolve_config
    from idealseg.errors import IdealsegError

    with pytest.warns(UserWarning, match=r"option 'head' is read by ideal-pretrain only; finetune with bcp"):
        resolve_config("finetune", "tiny", None, {"head": "mlp"})
    with pytest.raises(IdealsegError, match=r"run.yaml: option 'num_classes' comes from the dataset"):
        (tmp_path / "run.yaml").write_text("num_classes: 3\n")
        resolve_config("finetune", None, str(tmp_path / "run.yaml"), {})
    (tmp_path / "run.yaml").write_text("profile: tiny\n")
    assert resolve_config("finetune", None, str(tmp_path / "run.yaml"), {}).input_size == 64  # tiny, not cpu
    assert resolve_config("finetune", "gpu", str(tmp_path / "run.yaml"), {}).input_size == 256  # the flag wins


@pytest.mark.parametrize("profile,size", [(None, "128"), ("gpu", "256"), ("tiny", "64")])
def test_help_groups_the_options_and_shows_the_chosen_profiles_values(profile, size, capsys):
    from idealseg.cli import main

    with pytest.raises(SystemExit):
        main(["finetune", *(["--profile", profile] if profile else []), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"experiment ({profile or 'cpu'} profile's values" in text
    assert "budget and optimiser:" in text and "method options (read only by the methods named):" in text
    assert f"square training input size in pixels (default: {size})" in text
