"""The profiles: named sets of defaults a run's options start from (METHOD.md section 7).

Their own module because they are data tuned by measurement (docs/training.md, "Profiles"), read
by the resolver, `info` (each profile's patch against the dataset's anatomy) and the benchmarks.
"""

from __future__ import annotations

from typing import Any

# The `cpu` profile: see docs/training.md ("Profiles") for how these were chosen on a 2-core machine.
# Budgets count optimizer steps, so one seed gives the same run on any machine and under any load; the
# cpu profile's counts are what its former wall-clock budgets (480 s of pre-training, 1200 s of
# fine-tuning) gave the default recipe on the reference machine (AMD EPYC, 1 thread: 547 + 1812 steps,
# benchmarks/results/acdc_cpu/calibration.json). `--time-budget` still adds a wall-clock limit.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "pretrain": dict(input_size=128, iterations=550, time_budget=0, batch_labeled=0,
                         batch_unlabeled=16, optimizer="adam", lr=1e-3, weight_decay=1e-5, val_every=0,
                         checkpoint_every=100),
        "finetune": dict(input_size=128, iterations=1800, time_budget=0, batch_labeled=4,
                         batch_unlabeled=4, optimizer="adam", lr=1e-3, val_every=400, checkpoint_every=100),
    },
    "gpu": {
        "pretrain": dict(input_size=256, iterations=11000, time_budget=0, batch_labeled=0, batch_unlabeled=12,
                         optimizer="adam", lr=1e-3, weight_decay=1e-5, val_every=0, checkpoint_every=1000),
        "finetune": dict(input_size=256, iterations=30000, time_budget=0, batch_labeled=12, batch_unlabeled=12,
                         optimizer="sgd", lr=0.01, val_every=1000, checkpoint_every=1000),
    },
    "demo": {  # `idealseg demo`: the phantom end to end in a few minutes on 2 cores
        "pretrain": dict(input_size=64, iterations=300, time_budget=0, batch_labeled=0, batch_unlabeled=16,
                         optimizer="adam", lr=1e-3, weight_decay=1e-5, val_every=0, checkpoint_every=50),
        "finetune": dict(input_size=64, iterations=1000, time_budget=0, batch_labeled=4, batch_unlabeled=4,
                         optimizer="sgd", lr=0.01, val_every=200, checkpoint_every=100),
    },
    "tiny": {  # tests and the demo's smoke runs: seconds, not minutes
        "pretrain": dict(input_size=64, iterations=20, batch_labeled=0, batch_unlabeled=4, optimizer="adam",
                         lr=1e-3, val_every=0, checkpoint_every=10, channels=(8, 16, 32, 64, 128)),
        "finetune": dict(input_size=64, iterations=20, batch_labeled=2, batch_unlabeled=2, val_every=10,
                         checkpoint_every=10, channels=(8, 16, 32, 64, 128)),
    },
}


for _stages in PROFILES.values():  # contrastive pre-training normalises over the global batch under torchrun
    _stages["pretrain"].setdefault("sync_bn", True)


def profile_input_sizes() -> dict[str, int]:
    """Each profile's fine-tuning input size: the patches the dataset's plan sizes against its anatomy."""
    return {name: stages["finetune"]["input_size"] for name, stages in PROFILES.items()}


def profile_value(profile: str, stage: str, name: str) -> Any:
    """What option `name` is under `profile` for `stage` before a YAML or a flag changes it: the profile's
    own value, else RunConfig's default (so `--help` can show the values a run would start from)."""
    from idealseg.config.run_config import RunConfig

    stages = PROFILES.get(profile, PROFILES["cpu"])
    return stages.get(stage, {}).get(name, getattr(RunConfig(), name))
