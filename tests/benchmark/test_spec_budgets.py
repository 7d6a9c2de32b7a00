"""A benchmark's label budgets are columns: one budget spelled twice is refused, not run as two."""

from __future__ import annotations

import pytest

from idealseg.benchmark.spec import load_benchmark
from idealseg.errors import IdealsegError


@pytest.mark.parametrize("labeled", ["[2, '2', 2]", "[' 2', 3, '02']"])
def test_one_budget_named_twice_is_refused_in_one_line(tmp_path, labeled):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(f"dataset: d\nlabeled: {labeled}\nmethods:\n  - {{name: sup, method: supervised}}\n")
    with pytest.raises(IdealsegError, match=r"b.yaml: labeled: 2 named more than once") as caught:
        load_benchmark(cfg)
    assert "\n" not in str(caught.value)


def test_budgets_are_kept_in_one_spelling(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text("dataset: d\nlabeled: [' 3', 2, ssl4mis:7]\nmethods:\n  - {name: sup, method: supervised}\n")
    assert load_benchmark(cfg).labeled == ["3", "2", "ssl4mis:7"]
