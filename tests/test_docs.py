"""Tables the docs copy from a committed results file say what the file says."""

from __future__ import annotations

from .conftest import load_benchmark_script

sync = load_benchmark_script("sync_docs_table")


def test_benchmark_page_copies_the_cpu_report_table():
    page = (sync.ROOT / "docs" / "benchmarks.md").read_text()
    copied = page.split(sync.START, 1)[1].split(sync.END, 1)[0]
    report = (sync.ROOT / "benchmarks" / "results" / "acdc_cpu" / "report.md").read_text()
    assert sync.first_table(copied) == sync.first_table(report), (
        "docs/benchmarks.md's table is stale: python benchmarks/sync_docs_table.py")
