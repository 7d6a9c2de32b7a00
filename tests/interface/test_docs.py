"""Tables and figures the docs copy from a committed results file say what the file says; the docs
cite no internal work items."""

from __future__ import annotations

import re

import pytest

from ..conftest import load_benchmark_script

sync = load_benchmark_script("sync_docs_table")


@pytest.mark.parametrize("name", sorted(sync.TABLES))
def test_docs_pages_copy_the_reports_tables(name):
    page = sync.page(name)
    assert sync.tables(sync.copied(page.read_text(), name), 9) == sync.report(name), (
        f"docs/{page.name}'s {name} is stale: python benchmarks/scripts/sync_docs_table.py")


@pytest.mark.parametrize("copy", sorted(sync.FIGURES))
def test_docs_figures_are_the_committed_results_figures(copy):
    source = sync.ROOT / "benchmarks" / "results" / sync.FIGURES[copy]
    assert (sync.ROOT / "docs" / copy).read_bytes() == source.read_bytes(), (
        f"docs/{copy} is stale: python benchmarks/scripts/sync_docs_table.py")


def test_results_page_fits_a_few_screens():
    assert len((sync.ROOT / "docs" / "results.md").read_text().splitlines()) <= 200


def test_docs_cite_no_internal_work_items():
    """Users never see the tracker: a page says what and why, not which issue asked for it."""
    pattern = re.compile(r"issue ?#?[0-9]+|#[0-9]{2}\b", re.IGNORECASE)
    bench = sync.ROOT / "benchmarks"
    paths = [sync.ROOT / "README.md", sync.ROOT / "CHANGELOG.md", *sorted((sync.ROOT / "docs").glob("*.md")),
             *sorted(bench.glob("*.md")), *sorted((bench / "configs").glob("*")),
             *sorted((bench / "scripts").glob("*"))]
    found = [f"{p.relative_to(sync.ROOT)}:{i}: {line.strip()}" for p in paths if p.is_file()
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", sync.HEADLINE_PAGES)
def test_headline_is_built_from_the_tuned_report(name):
    text = (sync.ROOT / name).read_text()
    start, end = sync.README_MARKERS
    assert text.split(start, 1)[1].split(end, 1)[0].strip().splitlines() == sync.headline(), (
        f"{name}'s headline is stale: python benchmarks/scripts/sync_docs_table.py")


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


def test_committed_results_the_gap_table_is_computed_from_the_reports():
    """The Results page's share-of-the-gap table is what sync_docs_table.py computes from the tuning,
    converged and ceiling reports (not typed by hand)."""
    text = (sync.ROOT / "docs" / "results.md").read_text()
    start, end = sync.GAP_MARKERS
    assert text.split(start, 1)[1].split(end, 1)[0].strip().splitlines() == sync.gap_table(), (
        "docs/results.md's gap table is stale: python benchmarks/scripts/sync_docs_table.py")
