"""Each fact read once per command: the dataset's plan once per stage, and every YAML file (a --config
YAML, a run folder's config.yaml) once per version of it, however many checks consult them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from .test_plan_and_setup import _count_calls


def _count_yaml_reads(monkeypatch) -> Counter:
    """Each time a .yaml file's text is read, by path: what reading it once means, whoever caches what."""
    reads: Counter = Counter()
    original = Path.read_text

    def counted(self, *args, **kwargs):
        if self.suffix == ".yaml":
            reads[self.name if self.name != "config.yaml" else f"{self.parent.name}/config.yaml"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    return reads


def test_one_train_reads_the_plan_once_a_stage_and_its_config_yaml_once(phantom, tmp_path, monkeypatch):
    import idealseg.pipeline  # noqa: F401  every module that could call them, loaded before they are wrapped

    config = tmp_path / "options.yaml"
    config.write_text(yaml.safe_dump({"lr": 0.01}))
    plans = _count_calls(monkeypatch, "idealseg.data.fingerprint", "load_plan")
    reads = _count_yaml_reads(monkeypatch)
    idealseg.train(phantom, tmp_path / "run", profile="tiny", iterations=2, labeled="2", val_every=0, threads=1,
                   config=config)
    assert len(plans) == 2  # pre-training and fine-tuning, once each
    assert reads == {"options.yaml": 1}


def test_a_resumed_train_reads_each_config_yaml_once(phantom, tmp_path, monkeypatch):
    import idealseg.pipeline  # noqa: F401

    options = dict(profile="tiny", iterations=2, labeled="2", val_every=0, threads=1)
    idealseg.train(phantom, tmp_path / "run", **options)
    reads = _count_yaml_reads(monkeypatch)
    idealseg.train(phantom, tmp_path / "run", resume=True, **options)
    assert reads and max(reads.values()) == 1, reads
