"""Write docs/options.md: every option with its default, type, choices or range and readers.

The committed page is this script's output (tests/test_cli.py compares them); regenerate it with
`PYTHONPATH=src python scripts/options_doc.py > docs/options.md`. A script, not library code: only
the docs and their test read it.
"""

from __future__ import annotations

from dataclasses import fields

from idealseg.config import OPTIONS, PROFILES, RunConfig


def options_markdown() -> str:
    """docs/options.md's text, from `idealseg.config.OPTIONS`, the RunConfig fields and the cpu profile."""
    defaults = RunConfig()
    lines = ["# Options", "",
             "Every option of a run, settable in a `--config` YAML by its name and on the command line as",
             "`--name-with-dashes` (except those set from the dataset or by the command). Profiles (`cpu`, `gpu`,",
             "`demo`, `tiny`) change some defaults; an option the chosen method does not read is warned about.",
             "Generated from `idealseg.config.OPTIONS` by `scripts/options_doc.py`.", "",
             "The cpu column gives the `cpu` profile's value (fine-tuning / pre-training) where it sets one.", "",
             "| option | default | cpu | allowed | read by | what it does |", "|---|---|---|---|---|---|"]
    for f in fields(RunConfig):
        option = OPTIONS[f.name]
        value = getattr(defaults, f.name)
        default = ",".join(map(str, value)) if isinstance(value, tuple) else value
        allowed = ", ".join(option.choices) if option.choices else option.limit[1] if option.limit else str(f.type)
        allowed = allowed.replace(" | None", " or none")
        readers = ", ".join(option.readers) or "every run"
        flag = option.cli or f.name in ("method", "profile")  # these two are flags of their own
        help_text = option.help + ("" if flag else " (not a flag)")
        shown = f"`{default}`" if default not in ("", ()) else "(empty)"
        cpu = [PROFILES["cpu"][stage].get(f.name) for stage in ("finetune", "pretrain")]
        cpu_text = " / ".join("-" if v is None else f"`{v}`" for v in cpu) if any(v is not None for v in cpu) else ""
        lines.append(f"| `{f.name}` | {shown} | {cpu_text} | {allowed} | {readers} | {help_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(options_markdown(), end="")
