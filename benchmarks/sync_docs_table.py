"""Copy the tables of committed benchmark reports into docs/benchmarks.md, each between its markers
(tests/test_docs.py fails when a copy and its report differ). Run after a cell finishes:
    python benchmarks/sync_docs_table.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# marker name: (results folder, how many of its report's tables: the Dice table, then the paired one)
TABLES = {"acdc-cpu-table": ("acdc_cpu", 1), "acdc-cpu-tuning-tables": ("acdc_cpu_tuning", 2)}


def markers(name: str) -> tuple[str, str]:
    """The comment lines that open and close a copied table in the page."""
    return f"<!-- {name}: from benchmarks/results/{TABLES[name][0]}/report.md -->", f"<!-- /{name} -->"


def tables(text: str, count: int) -> list[list[str]]:
    """The lines of the first `count` markdown tables in `text`."""
    lines, found, i = text.splitlines(), [], 0
    while len(found) < count and i < len(lines):
        if lines[i].startswith("|"):
            end = next((j for j in range(i, len(lines)) if not lines[j].startswith("|")), len(lines))
            found.append(lines[i:end])
            i = end
        i += 1
    return found


def report(name: str) -> list[list[str]]:
    folder, count = TABLES[name]
    return tables((ROOT / "benchmarks" / "results" / folder / "report.md").read_text(), count)


def copied(page: str, name: str) -> str:
    start, end = markers(name)
    return page.split(start, 1)[1].split(end, 1)[0]


def main() -> None:
    path = ROOT / "docs" / "benchmarks.md"
    page = path.read_text()
    for name in TABLES:
        start, end = markers(name)
        before, rest = page.split(start, 1)
        after = rest.split(end, 1)[1]
        body = "\n\n".join("\n".join(table) for table in report(name))
        page = f"{before}{start}\n{body}\n{end}{after}"
    path.write_text(page)


if __name__ == "__main__":
    main()
