"""Tables the docs copy from a committed results file say what the file says."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_table(text: str) -> list[str]:
    """The lines of the first markdown table in `text`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_benchmark_page_copies_the_cpu_report_table():
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    copied = page.split("<!-- acdc-cpu-table: from benchmarks/results/acdc_cpu/report.md -->", 1)[1]
    copied = copied.split("<!-- /acdc-cpu-table -->", 1)[0]
    report = (ROOT / "benchmarks" / "results" / "acdc_cpu" / "report.md").read_text()
    assert first_table(copied) == first_table(report), "docs/benchmarks.md's table is stale: copy report.md's"
