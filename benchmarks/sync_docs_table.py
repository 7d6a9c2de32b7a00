"""Copy the first table of benchmarks/results/acdc_cpu/report.md into docs/benchmarks.md, between its
`acdc-cpu-table` markers (tests/test_docs.py fails when the two differ). Run after a cell finishes:
    python benchmarks/sync_docs_table.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = "<!-- acdc-cpu-table: from benchmarks/results/acdc_cpu/report.md -->"
END = "<!-- /acdc-cpu-table -->"


def first_table(text: str) -> list[str]:
    """The lines of the first markdown table in `text`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def main() -> None:
    page = ROOT / "docs" / "benchmarks.md"
    text = page.read_text()
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    table = "\n".join(first_table((ROOT / "benchmarks" / "results" / "acdc_cpu" / "report.md").read_text()))
    page.write_text(f"{before}{START}\n{table}\n{END}{after}")


if __name__ == "__main__":
    main()
