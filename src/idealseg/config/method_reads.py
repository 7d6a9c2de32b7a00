"""The methods' names and the options each declares it reads, learnt without importing torch.

Each method class in `idealseg/methods/` declares `reads`, the options beyond those every run of
its stage reads; the option table's "read by", the CLI's help and the warning about an unread
option all come from those declarations. They are read from the source files (as the names are
from the file names) so that `--help` and YAML checks need not import torch; a test checks this
reading against the imported classes.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

METHODS_FOLDER = Path(__file__).resolve().parents[1] / "methods"
NOT_METHODS = ("__init__", "base", "common", "paste")  # helpers the methods share


def method_names() -> list[str]:
    """The methods' names, from the files of `idealseg/methods/` (one file a method, `ideal_pretrain.py`
    is `ideal-pretrain`), so that `--help` can list them without importing torch."""
    return sorted(p.stem.replace("_", "-") for p in METHODS_FOLDER.glob("*.py") if p.stem not in NOT_METHODS)


@functools.cache
def declared_reads() -> dict[str, tuple[str, ...]]:
    """{method name: its `reads` declaration}, from the class in each method file that sets `name`."""
    declared: dict[str, tuple[str, ...]] = {}
    for path in sorted(METHODS_FOLDER.glob("*.py")):
        if path.stem in NOT_METHODS:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                values = _class_constants(node)
                if isinstance(values.get("name"), str):
                    declared[values["name"]] = tuple(values.get("reads", ()))
    return declared


def method_readers(option: str) -> tuple[str, ...]:
    """The methods that declare they read `option`, in file order."""
    return tuple(name for name, reads in declared_reads().items() if option in reads)


def _class_constants(node: ast.ClassDef) -> dict[str, object]:
    """The class body's literal assignments (`name = "bcp"`, `reads = (...)`, annotated or not)."""
    values: dict[str, object] = {}
    for item in node.body:
        target = item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else getattr(
            item, "target", None) if isinstance(item, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and getattr(item, "value", None) is not None:
            try:
                values[target.id] = ast.literal_eval(item.value)
            except ValueError:
                continue
    return values
