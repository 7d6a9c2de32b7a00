"""Tables the docs copy from a committed results file say what the file says."""

from __future__ import annotations

import pytest

from .conftest import load_benchmark_script

sync = load_benchmark_script("sync_docs_table")


@pytest.mark.parametrize("name", sorted(sync.TABLES))
def test_benchmark_page_copies_the_reports_tables(name):
    page = (sync.ROOT / "docs" / "benchmarks.md").read_text()
    assert sync.tables(sync.copied(page, name), 9) == sync.report(name), (
        f"docs/benchmarks.md's {name} is stale: python benchmarks/scripts/sync_docs_table.py")


def test_readme_headline_is_built_from_the_tuned_report():
    readme = (sync.ROOT / "README.md").read_text()
    start, end = sync.README_MARKERS
    assert readme.split(start, 1)[1].split(end, 1)[0].strip().splitlines() == sync.headline(), (
        "README.md's headline is stale: python benchmarks/scripts/sync_docs_table.py")


def test_headline_bolds_the_best_and_marks_single_seeds(monkeypatch):
    dice = ["| method | ssl4mis:7 labelled | ssl4mis:1 labelled |", "|---|---|---|",
            "| supervised adam 1e-3 | 0.80 (± 0.01, 2 seeds) / 7 | 0.30 (± 0.01, 2 seeds) / 30 |",
            "| ideal adam 1e-3 | 0.70 / 9 | - |",
            "| bcp adam 1e-3 | 0.75 (± 0.01, 2 seeds) / 8 | 0.50 (± 0.01, 2 seeds) / 17 |",
            "| ideal pre-training + bcp adam 1e-3 | 0.78 (± 0.01, 2 seeds) / 8 | 0.60 (± 0.01, 2 seeds) / 12 |"]
    paired = ["| method | ssl4mis:7 labelled | ssl4mis:1 labelled |", "|---|---|---|",
              "| ideal pre-training + bcp adam 1e-3 | -0.02 ± 0.01 (40) | +0.30 ± 0.02 (40) |"]
    monkeypatch.setattr(sync, "report", lambda name: [dice, paired])
    rows = sync.headline()[2:]
    assert rows[0] == "| 7 | **0.80** | 0.70 (1 seed) | 0.75 | 0.78 | -0.02 ± 0.01 | supervised |"
    assert rows[1] == "| 1 | 0.30 | - | 0.50 | **0.60** | +0.30 ± 0.02 | IDEAL pre-training + BCP |"
