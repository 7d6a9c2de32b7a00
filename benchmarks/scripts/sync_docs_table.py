"""Copy the tables of committed benchmark reports into the docs pages (docs/results.md,
docs/notes.md), each between its markers, copy the figures the Results page embeds into
docs/figures/, and build the README's headline table from the tuned report (tests/test_docs.py
fails when a copy and its source differ). Run after a cell finishes:
    python benchmarks/scripts/sync_docs_table.py
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# marker name: (results folder, how many of its report's tables: the Dice table, then the paired one,
# the docs page that copies them)
TABLES = {"acdc-cpu-table": ("acdc_cpu", 1, "notes.md"),
          "acdc-cpu-tuning-tables": ("acdc_cpu_tuning", 2, "results.md"),
          "acdc-cpu-converged-tables": ("acdc_cpu_converged", 2, "results.md"),
          "cross-centre-tables": ("cross_centre", 3, "results.md")}
# figures the docs embed (mkdocs serves only files inside docs/): docs path -> results file
FIGURES = {"figures/dice_vs_compute_equal_compute.png": "acdc_cpu_tuning/dice_vs_compute.png",
           "figures/dice_vs_compute_converged.png": "acdc_cpu_converged/dice_vs_compute.png"}
# the README's headline columns: (column label, row of the tuned report, name in the "best" column);
# the last is `idealseg train`'s default recipe, whose paired difference the headline shows
HEADLINE = [("supervised U-Net", "supervised adam 1e-3", "supervised"),
            ("IDEAL", "ideal adam 1e-3", "IDEAL"),
            ("BCP", "bcp adam 1e-3", "BCP"),
            ("IDEAL pre-training + BCP (`train`'s default)", "ideal pre-training + bcp adam 1e-3",
             "IDEAL pre-training + BCP")]
README_MARKERS = ("<!-- headline: from benchmarks/results/acdc_cpu_tuning/report.md -->", "<!-- /headline -->")
HEADLINE_PAGES = ("README.md", "docs/results.md")  # both open with the headline


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


def page(name: str) -> Path:
    """The docs page that copies `name`'s tables."""
    return ROOT / "docs" / TABLES[name][2]


def report(name: str) -> list[list[str]]:
    folder, count, _ = TABLES[name]
    return tables((ROOT / "benchmarks" / "results" / folder / "report.md").read_text(), count)


def copied(page: str, name: str) -> str:
    start, end = markers(name)
    return page.split(start, 1)[1].split(end, 1)[0]


def cells(table: list[str]) -> dict[str, list[str]]:
    """A report table's rows by method name: the cells after the name, one per budget."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    return {row[0]: row[1:] for row in rows}


def headline() -> list[str]:
    """The README's headline: each budget's Dice of the columns' rows, the default recipe minus
    supervised (paired), and the best of them in bold, so that the front page cannot drift from the
    report it quotes."""
    dice_table, paired_table = report("acdc-cpu-tuning-tables")
    budgets = [b.split(":")[1].split()[0] for b in dice_table[0].strip("|").split("|")[1:]]
    dice, paired = cells(dice_table), cells(paired_table)
    header = [label for label, _, _ in HEADLINE] + ["default minus supervised (paired)", "best"]
    lines = ["| labelled patients | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    for i, budget in enumerate(budgets):
        values = {row: dice[row][i].split(" / ")[0] for _, row, _ in HEADLINE}
        means = {row: float(v.split()[0]) for row, v in values.items() if v != "-"}
        best = max(means, key=means.get)
        shown = [f"**{values[row].split()[0]}**" if row == best else _one_seed(values[row])
                 for _, row, _ in HEADLINE]
        gain = paired[HEADLINE[-1][1]][i].rsplit(" (", 1)[0]
        short = next(name for _, row, name in HEADLINE if row == best)
        lines.append(f"| {budget} | " + " | ".join(shown + [gain, short]) + " |")
    return lines


GAP_MARKERS = ("<!-- gap: from the tuning, converged and ceiling reports -->", "<!-- /gap -->")
GAP_REGIMES = (("equal compute", "acdc_cpu_tuning"), ("equal steps", "acdc_cpu_converged"))
GAP_METHODS = (("BCP", "bcp adam 1e-3"), ("UniMatch", "unimatch adam 1e-3"),
               ("default recipe", "ideal pre-training + bcp adam 1e-3"))
PLAIN = "supervised adam 1e-3"


def _dice_cells(folder: str) -> tuple[list[str], dict[str, list[str]]]:
    """A report's first table: its budgets and, by row, each budget's mean Dice text ("-" where not run)."""
    table = tables((ROOT / "benchmarks" / "results" / folder / "report.md").read_text(), 1)[0]
    budgets = [b.strip().split()[0] for b in table[0].strip("|").split("|")[1:]]
    return budgets, {row: [v.split(" / ")[0].split()[0] for v in values] for row, values in cells(table).items()}


def gap_table() -> list[str]:
    """Each method's share of the gap between the plain U-Net and the same U-Net with all 70 training
    patients labelled (the ceiling, acdc_cpu_ceiling's report): (method - plain) / (ceiling - plain)."""
    _, ceiling_rows = _dice_cells("acdc_cpu_ceiling")
    ceiling = ceiling_rows[PLAIN][0]
    header = ["labelled", "regime", "plain U-Net", *(f"{name}'s share" for name, _ in GAP_METHODS),
              "ceiling (70 labelled)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for regime, folder in GAP_REGIMES:
        budgets, rows = _dice_cells(folder)
        for i, budget in enumerate(budgets):
            plain = rows[PLAIN][i]
            shares = []
            for _, row in GAP_METHODS:
                value = rows.get(row, ["-"] * len(budgets))[i]
                gap = float(ceiling) - float(plain)
                shares.append("-" if value == "-" else f"{(float(value) - float(plain)) / gap:+.0%}")
            lines.append(f"| {budget.split(':')[1]} | {regime} | {plain} | " + " | ".join(shares) + f" | {ceiling} |")
    return lines


def _one_seed(value: str) -> str:
    """A report cell's mean, marked when one seed stands behind it (the others have two)."""
    mean = value.split()[0]
    return mean if mean == "-" or "seeds" in value else f"{mean} (1 seed)"


def replace_between(text: str, start: str, end: str, body: str) -> str:
    """`text` with what lies between the marker lines `start` and `end` replaced by `body`."""
    before, rest = text.split(start, 1)
    return f"{before}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main() -> None:
    for name in TABLES:
        body = "\n\n".join("\n".join(table) for table in report(name))
        page(name).write_text(replace_between(page(name).read_text(), *markers(name), body))
    for copy, source in FIGURES.items():
        (ROOT / "docs" / copy).parent.mkdir(exist_ok=True)
        (ROOT / "docs" / copy).write_bytes((ROOT / "benchmarks" / "results" / source).read_bytes())
    for name in HEADLINE_PAGES:
        path = ROOT / name
        path.write_text(replace_between(path.read_text(), *README_MARKERS, "\n".join(headline())))
    if (ROOT / "benchmarks" / "results" / "acdc_cpu_ceiling" / "report.md").exists():
        path = ROOT / "docs" / "results.md"
        path.write_text(replace_between(path.read_text(), *GAP_MARKERS, "\n".join(gap_table())))


if __name__ == "__main__":
    main()
