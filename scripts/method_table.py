"""Write src/idealseg/config/method_table.py from the imported method classes (the registry).

    PYTHONPATH=src python scripts/method_table.py          # rewrite the table
    PYTHONPATH=src python scripts/method_table.py --check  # exit 1 if it is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "src" / "idealseg" / "config" / "method_table.py"
HEADER = '''"""The built-in methods' stage and reads, so that `--help` lists them without importing torch.

Generated from the method classes by scripts/method_table.py; do not edit (a test checks it).
"""

BUILT_IN: dict[str, tuple[str, tuple[str, ...]]] = {
'''


def table_text() -> str:
    """The table's source, from the classes `idealseg.methods` registers."""
    import idealseg.methods  # noqa: F401  (importing the package registers every method)
    from idealseg.config.method_registry import registered_entries

    lines = [HEADER]
    for name, entry in sorted(registered_entries("idealseg.methods.").items()):
        reads = "".join(f"        {r!r},\n" for r in entry.reads)
        body = f"(\n{reads}    )" if reads else "()"
        lines.append(f"    {name!r}: ({entry.stage!r}, {body}),\n")
    lines.append("}\n")
    return "".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the table is current")
    args = parser.parse_args()
    text = table_text()
    if args.check:
        if TABLE.read_text() != text:
            print(f"{TABLE} is stale: run scripts/method_table.py", file=sys.stderr)
            return 1
        return 0
    TABLE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
