"""The code's shape, kept: no import cycle between packages, a docstring on every public piece."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "idealseg"
OVERRIDES = {"forward", "predict", "encoders", "on_step_end", "streams_argmax", "state_dict", "load_state_dict"}


def modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text())


def test_no_import_cycle_between_packages():
    deps: dict[str, set[str]] = defaultdict(set)
    for path, tree in modules():
        rel = path.relative_to(SRC)
        own = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("idealseg."):
                target = node.module.split(".")[1]
                if target != own:
                    deps[own].add(target)
    cycles = sorted((a, b) for a in deps for b in deps[a] if a < b and a in deps.get(b, ()))
    assert not cycles, cycles


def test_every_public_class_and_function_has_a_docstring():
    """Overrides of a documented base method (a method's forward, predict, ...) inherit its docstring."""
    missing = []
    for path, tree in modules():
        for node in tree.body:
            items = [node]
            if isinstance(node, ast.ClassDef):
                items += [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name not in OVERRIDES]
            missing += [f"{path.relative_to(SRC)}:{n.lineno} {n.name}" for n in items
                        if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")
                        and not ast.get_docstring(n)]
    assert not missing, missing
