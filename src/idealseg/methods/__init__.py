"""Training methods, one file each; adding one is a new file plus one line in METHODS."""

from __future__ import annotations

from idealseg.errors import IdealsegError
from idealseg.methods.base import Method
from idealseg.methods.bcp import BCP
from idealseg.methods.cps import CPS
from idealseg.methods.gcl_lcl_pretrain import GclLclPretrain
from idealseg.methods.ideal import Ideal
from idealseg.methods.ideal_pretrain import IdealPretrain
from idealseg.methods.mean_teacher import MeanTeacher
from idealseg.methods.supervised import Supervised
from idealseg.methods.unimatch import UniMatch

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (IdealPretrain, GclLclPretrain, Ideal, Supervised, MeanTeacher, CPS, BCP, UniMatch)
}


def get_method(name: str, stage: str | None = None) -> type[Method]:
    """The method class called `name`, checked against the stage that asks for it."""
    if not isinstance(name, str) or name not in METHODS:  # a YAML list or number is named too
        raise IdealsegError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    cls = METHODS[name]
    if stage is not None and cls.stage != stage:
        options = sorted(n for n, m in METHODS.items() if m.stage == stage)
        raise IdealsegError(f"{name!r} is a {cls.stage} method; for {stage} use one of {options}")
    return cls
