"""Tables the docs copy from a committed results file say what the file says."""

from __future__ import annotations

import pytest

from .conftest import load_benchmark_script

sync = load_benchmark_script("sync_docs_table")


@pytest.mark.parametrize("name", sorted(sync.TABLES))
def test_benchmark_page_copies_the_reports_tables(name):
    page = (sync.ROOT / "docs" / "benchmarks.md").read_text()
    assert sync.tables(sync.copied(page, name), 9) == sync.report(name), (
        f"docs/benchmarks.md's {name} is stale: python benchmarks/sync_docs_table.py")
