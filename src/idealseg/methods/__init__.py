"""Training methods, one file each: a new file here with a `Method` subclass that sets `name` is a new
method (the class registers itself, methods/base.py; every module of this package is imported here)."""

from __future__ import annotations

import importlib
import pkgutil

from idealseg.config.method_registry import method_entries
from idealseg.errors import IdealsegError
from idealseg.methods.base import _CLASSES, Method
from idealseg.plugins import hint

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

METHODS: dict[str, type[Method]] = _CLASSES  # the registry's classes, by name (one dict: later ones join it)


def get_method(name: str, stage: str | None = None) -> type[Method]:
    """The method class called `name`, checked against the stage that asks for it."""
    if not isinstance(name, str) or name not in METHODS:  # a YAML list or number is named too
        raise IdealsegError(f"unknown method {name!r}; expected one of {sorted(METHODS)} ({hint()})")
    cls = METHODS[name]
    if stage is not None and cls.stage != stage:
        options = sorted(n for n, e in method_entries().items() if e.stage == stage)
        raise IdealsegError(f"{name!r} is a {cls.stage} method; for {stage} use one of {options}")
    return cls
