"""The one importer registry: an importer is one function in one file, registered by its decorator.

`prepare` looks a source up here by name, builds the dataset writer its `describe` asks for (the
dataset's name, classes, source and modality) and hands `run` the writer and the request (every
option `prepare` was given; an importer reads those it needs). The command line lists the names
registered here, and every module of this package is imported by the package, so a new file with
`@importer("mysource", describe=...)` on its function is a new `idealseg prepare mysource`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idealseg.errors import IdealsegError
from idealseg.plugins import hint


@dataclass(frozen=True)
class ImportRequest:
    """What `prepare` was asked, for an importer to take what it reads (the rest it ignores)."""

    src: Path | None
    normalization: str = "percentile"
    label_map: dict[int, int] | None = None
    classes: list[str] | None = None  # the user's --classes
    val: str | None = None
    test: str | None = None
    seed: int = 0
    patients: int = 10  # the phantom's
    spacing_from: Path | None = None
    patient_rule: re.Pattern | None = None


@dataclass(frozen=True)
class WriterSpec:
    """The dataset an importer writes: its name, classes (empty with `infer_classes`: from the labels),
    where it came from and the modality."""

    name: str
    classes: list[str]
    source: str
    modality: str
    infer_classes: bool = False


@dataclass(frozen=True)
class Importer:
    """A registered source: `run(request, writer)` adds its cases; `describe(request)` says what the
    writer holds; `needs_src`: False for a source generated from nothing (the phantom)."""

    name: str
    run: Callable[[ImportRequest, Any], None]
    describe: Callable[[ImportRequest], WriterSpec]
    needs_src: bool = True


IMPORTERS: dict[str, Importer] = {}


def importer(name: str, *, describe: Callable[[ImportRequest], WriterSpec], needs_src: bool = True):
    """Register the decorated `run(request, writer)` as the importer of source `name`; a name taken by
    another function is refused (a second "nifti" would silently replace the first)."""

    def register(run: Callable[[ImportRequest, Any], None]) -> Callable[[ImportRequest, Any], None]:
        other = IMPORTERS.get(name)
        if other is not None and other.run.__qualname__ != run.__qualname__:
            raise IdealsegError(f"importer name {name!r} is already taken by {other.run.__module__}")
        IMPORTERS[name] = Importer(name, run, describe, needs_src)
        return run

    return register


def importer_names() -> list[str]:
    """The registered sources, in the order the package lists them (imports every importer module)."""
    import idealseg.data.importers  # noqa: F401  (importing the package registers every importer)

    return list(IMPORTERS)


def get_importer(name: str) -> Importer:
    """The importer of source `name`, or one line listing the sources there are."""
    names = importer_names()
    if name not in IMPORTERS:
        raise IdealsegError(f"source {name!r}: must be one of {', '.join(names)} ({hint()})")
    return IMPORTERS[name]
