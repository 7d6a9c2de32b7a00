"""Resolving a run's options from their sources, in one order, into one frozen RunConfig."""

from __future__ import annotations

import warnings
from typing import Any

from idealseg.config.options import OPTIONS, reads
from idealseg.config.profiles import PROFILES
from idealseg.config.resume_rules import FROM_DATASET
from idealseg.config.run_config import RunConfig
from idealseg.config.yaml_io import read_yaml
from idealseg.errors import IdealsegError


def resolve_config(stage: str, profile: str | None, yaml_path: str | None, overrides: dict[str, Any],
                   resumed: dict[str, Any] | None = None, source: str = "command line") -> RunConfig:
    """Defaults < profile < the resumed run's own options < YAML file < command-line options (those not
    left at None).

    The profile is the command line's, else the YAML's `profile:`, else the resumed run's, else cpu.
    `resumed` (a run folder's recorded options, on --resume) sits above the profile so that a run
    continues as it was started even where a newer idealseg changed a default (the cpu profile's
    optimiser, `train`'s method). An option that the dataset sets (classes, their number, the
    normalisation) is refused from the user; one that the chosen method and stage do not read is
    warned about by name (it would change nothing). `source` names where `overrides` came from in
    those messages.
    """
    values = read_yaml(yaml_path) if yaml_path else {}
    resumed = resumed or {}
    profile = profile or values.get("profile") or resumed.get("profile") or "cpu"
    if not isinstance(profile, str) or profile not in PROFILES:
        raise IdealsegError(f"{yaml_path or 'command line'}: unknown profile {profile!r}; "
                            f"expected one of {sorted(PROFILES)}")
    cfg = RunConfig(stage=stage, profile=profile).update(PROFILES[profile][stage], f"profile {profile}")
    cfg = cfg.update({k: v for k, v in resumed.items() if k != "profile"}, "the resumed run's config.yaml")
    user = {}
    for origin, given in ((yaml_path, values), (source, overrides)):
        if given:
            cfg = cfg.update({k: v for k, v in given.items() if k != "profile"}, str(origin))
            user.update({k.replace("-", "_"): str(origin) for k, v in given.items() if v is not None})
    stage_default = {}
    if stage == "pretrain" and "method" not in user and "method" not in resumed:
        stage_default["method"] = "ideal-pretrain"  # the stage's default method, unless a source named one
    cfg = cfg.derive(stage=stage, **stage_default)
    for key, origin in user.items():
        if key in FROM_DATASET:
            raise IdealsegError(f"{origin}: option {key!r} comes from the dataset's dataset.json; remove it")
        if key in OPTIONS and not reads(key, stage, cfg.method):
            who = ", ".join(OPTIONS[key].readers)
            warnings.warn(f"{origin}: option {key!r} is read by {who} only; {stage} with {cfg.method} ignores it",
                          stacklevel=2)
    return cfg.check()
