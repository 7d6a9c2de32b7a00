"""How the equal-compute budget prices a method's step: which options change its cost, and the parts
of a run whose steps cost differently.

These are the benchmark's rules, not the methods': a method says what a step computes, the benchmark
decides what that step costs against the others'. A method whose run has parts of different cost
(BCP's cheap labelled-only warm-up, then its dearer self-training) would otherwise be priced as if
every step were its dearest and get fewer steps than its budget buys (9-15 % fewer for BCP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idealseg.config import RunConfig

# Options that change only numbers inside a step (the optimiser's, a loss weight or threshold, a
# schedule), not which networks run on what: a variant made of these costs what its plain method costs.
SAME_COST = {"lr", "optimizer", "weight_decay", "poly_power", "lambda_max", "rampup", "pseudo_threshold",
             "sup_loss", "unlabeled_weight", "confidence", "ema_decay", "temperature"}

Parts = list[tuple[float, dict[str, Any]]]
"""(fraction of the steps, options that make a short run all of that part), fractions summing to 1."""


def bcp_parts(options: dict[str, Any]) -> Parts:
    """BCP's warm-up steps train one network on labelled slices, its self-training steps a student on
    twice as many slices beside a teacher (about 2.1x a warm-up step in the benchmark's calibration,
    2.5x in a quiet 30-step measurement on one CPU thread). `options` are the run's own, before the
    profile's defaults: an absent or null `labeled_warmup` is the default.

    The warm-up's mixing prices the warm-up part only: the self-training part of a run with
    `warmup_mixing` drops it (None), so it shares the default's measurement. The paste itself costs
    next to nothing (a plain warm-up step at 0.351 s against 0.355 s with copy-paste), but a
    plain warm-up is measured apart rather than assumed equal."""
    value = options.get("labeled_warmup")
    warmup = RunConfig.labeled_warmup if value is None else float(value)
    mixing = options.get("warmup_mixing") or RunConfig.warmup_mixing
    warm = {"labeled_warmup": 1.0, **({} if mixing == RunConfig.warmup_mixing else {"warmup_mixing": mixing})}
    train = {"labeled_warmup": 0.0, **({"warmup_mixing": None} if "warmup_mixing" in options else {})}
    if warmup <= 0 or warmup >= 1:  # all one part, priced as that part
        return [(1.0, warm if warmup >= 1 else train)]
    return [(warmup, warm), (1 - warmup, train)]


# The methods whose runs have parts of different step cost; every other method is one part.
PARTS: dict[str, Callable[[dict[str, Any]], Parts]] = {"bcp": bcp_parts}


def run_parts(method: str, options: dict[str, Any]) -> Parts:
    """The parts of a run of `method` with the run's own `options` whose steps cost differently."""
    rule = PARTS.get(method)
    return rule(options) if rule else [(1.0, {})]


def phase_jobs(stage: str, method: str, opts: dict, run_options: dict) -> list[tuple[float, tuple]]:
    """(fraction of the steps, calibration job) for each part of a run of `method` whose steps cost
    differently; `run_options` are all the options the run has (they decide the parts' sizes). A part's
    job drops the options that do not change a step's cost (SAME_COST), so the variants of one method
    share its parts' measurements; an option a part sets to None does not change that part's cost."""
    parts = run_parts(method, run_options)
    if parts == [(1.0, {})]:
        return [(1.0, (stage, method, opts))]
    priced = {k: v for k, v in opts.items() if k not in SAME_COST}
    return [(fraction, (stage, method, {k: v for k, v in {**priced, **part}.items() if v is not None}))
            for fraction, part in parts]
