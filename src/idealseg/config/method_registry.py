"""The one method registry: each method's name, stage and the options it reads, without torch.

A method registers itself by its class (`Method.__init_subclass__`, methods/base.py): a subclass that
sets `name` is entered here under that name with its `stage` and `reads`, the moment its module is
imported. The CLI's `--help` and the YAML checks must not import torch to list the methods, so the
built-in methods are also known from `BUILT_IN` (config/method_table.py), a table generated from the
imported classes by `scripts/method_table.py` and checked against them by a test. A method defined
elsewhere (a user's file, a test) is known once its class is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from idealseg.config.method_table import BUILT_IN
from idealseg.errors import IdealsegError

STAGES = ("pretrain", "finetune")


@dataclass(frozen=True)
class MethodEntry:
    """What the configuration needs to know of a method: its stage and the options it reads beyond
    those every run of its stage reads (the options page's "read by", `--help`, the unread-option
    warning come from `reads`)."""

    stage: str
    reads: tuple[str, ...] = ()


_REGISTERED: dict[str, MethodEntry] = {}
_owners: dict[str, str] = {}  # name -> the class that registered it, for the message about a taken name


def register(name: str, stage: str, reads: tuple[str, ...], owner: str) -> None:
    """Enter a method under `name` (called by `Method.__init_subclass__`). Two classes of one name are
    refused: a second `name = "bcp"` would silently replace BCP in every run."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise IdealsegError(f"{owner}: a method's name must be a non-empty string, got {name!r}")
    if stage not in STAGES:
        raise IdealsegError(f"{owner}: method {name!r} has stage {stage!r}; expected one of {STAGES}")
    if name in _REGISTERED and _owners.get(name) != owner:
        raise IdealsegError(f"{owner}: method name {name!r} is already taken by {_owners[name]}; choose another")
    _REGISTERED[name] = MethodEntry(stage, tuple(reads))
    _owners[name] = owner



def method_entries() -> dict[str, MethodEntry]:
    """Every known method: the built-in table, and each class imported so far (which wins)."""
    entries = {name: MethodEntry(stage, tuple(reads)) for name, (stage, reads) in BUILT_IN.items()}
    entries.update(_REGISTERED)
    return entries


def registered_entries(module_prefix: str = "") -> dict[str, MethodEntry]:
    """The methods whose classes have been imported, those defined under `module_prefix` where given
    (scripts/method_table.py writes down those of `idealseg.methods.`)."""
    return {n: e for n, e in _REGISTERED.items() if _owners[n].startswith(module_prefix)}


def method_names(stage: str | None = None) -> list[str]:
    """The methods' names, sorted; those of one stage where `stage` is given."""
    return sorted(n for n, e in method_entries().items() if stage is None or e.stage == stage)


def method_readers(option: str) -> tuple[str, ...]:
    """The methods that declare they read `option`, sorted by name."""
    return tuple(n for n, e in sorted(method_entries().items()) if option in e.reads)
