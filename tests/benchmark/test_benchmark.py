"""The benchmark package: its YAML checked at load, calibration and pricing, the resumable matrix,
report.md and results.csv, and the benchmarks/ scripts that read its cells. Tests named
`test_committed_results_...` read the results committed under benchmarks/results."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace

import pytest

from idealseg.benchmark import (
    BenchmarkSpec,
    Budget,
    CellResult,
    MethodEntry,
    calibrate,
    collect,
    load_benchmark,
    paired_table,
    report_markdown,
    run_benchmark,
    validation_curves,
)
from idealseg.benchmark.pricing import PARTS
from idealseg.benchmark.spec import clocked_options
from idealseg.errors import IdealsegError


def _spec(budget: Budget | None = None, methods: list[MethodEntry] = (), **fields) -> BenchmarkSpec:
    """A spec built in code, as load_benchmark returns it, for the functions that take one."""
    return BenchmarkSpec(dataset="no-such-dataset", methods=list(methods), labeled=["2"], budget=budget, **fields)


def _rows(*rows: dict) -> list[MethodEntry]:
    """Rows of `methods:` built in code (seed 0 unless given)."""
    return [MethodEntry(**{"seeds": [0], **row}) for row in rows]


def _result(name: str, labeled: str, seed: int, **fields) -> CellResult:
    """A finished cell's row built in code, the fields a test does not read filled in."""
    return CellResult(**{"name": name, "method": name, "labeled": labeled, "seed": seed, "steps": 1,
                         "pretrain_seconds": 0.0, "metrics": {}, **fields})


@pytest.mark.parametrize("name", ["acdc_cpu", "acdc_gpu"])
def test_shipped_benchmark_configs_parse(name):
    from pathlib import Path

    spec = load_benchmark(Path(__file__).parents[2] / "benchmarks" / "configs" / f"{name}.yaml")
    assert spec.labeled[:2] == ["ssl4mis:7", "ssl4mis:3"]
    assert [c.name for c in spec.methods][:3] == ["supervised", "cps", "ideal"]
    names = {c.name for c in spec.methods}
    assert names >= {"supervised", "cps", "ideal", "mean-teacher", "gcl-lcl + supervised", "ideal w/o pre-training",
                     "ideal pre-training + supervised", "ideal with mlp head"}, names


def test_ideal_ablation_config_changes_one_thing_per_row():
    from pathlib import Path

    spec = load_benchmark(Path(__file__).parents[2] / "benchmarks" / "configs" / "acdc_cpu_ideal_ablation.yaml")
    rows = spec.methods
    assert rows[0].name == spec.reference == "ideal" and not rows[0].options
    assert all(r.pretrain == "ideal-pretrain" for r in rows)
    for r in rows[1:]:  # one thing of IDEAL's fine-tuning (the two perturbations change together), or
        # IDEAL's pre-trained encoder under another recipe's fine-tuning, that recipe as it is
        assert 1 <= len(r.options) <= 2 if r.method == "ideal" else not r.options, r


@pytest.mark.parametrize("name", ["acdc_cpu", "acdc_cpu_ideal_ablation", "acdc_cpu_tuning", "acdc_cpu_long",
                                  "acdc_cpu_bf16"])
def test_committed_results_cpu_cells_rerun_with_the_optimiser_they_recorded(name):
    """The cpu profile's optimiser moved from SGD 0.01 to Adam 1e-3: each committed cell's YAML still gives
    every stage the optimiser, learning rate and decay its run folder recorded (fine-tuning pinned by
    `finetune_options`, pre-training left on its profile's Adam)."""
    from pathlib import Path

    import yaml

    from idealseg.benchmark.spec import cell_dir, pretrain_key, stage_options
    from idealseg.config import resolve_config

    repo = Path(__file__).parents[2]
    spec = load_benchmark(repo / "benchmarks" / "configs" / f"{name}.yaml")
    root, checked = repo / spec.out, 0
    keys = ("optimizer", "lr", "weight_decay", "poly_power")
    for cell in spec.methods:
        for labeled in spec.labeled:
            for seed in cell.seeds:
                runs = [("finetune", cell.method, cell_dir(root, cell.name, labeled, seed) / "run")]
                if cell.pretrain:
                    runs.append(("pretrain", cell.pretrain, root / "pretrain" / f"{pretrain_key(cell)}_seed{seed}"))
                for stage, method, folder in runs:
                    if not (folder / "config.yaml").exists():
                        continue
                    recorded = yaml.safe_load((folder / "config.yaml").read_text())
                    now = resolve_config(stage, spec.profile, None,
                                         {**stage_options(spec, cell, stage), "method": method})
                    assert {k: getattr(now, k) for k in keys} == {k: recorded[k] for k in keys}, folder
                    checked += 1
    assert checked >= 2, f"no committed cell of {name} found under {root}"


def test_tuning_config_sweeps_both_methods_alike():
    from pathlib import Path

    spec = load_benchmark(Path(__file__).parents[2] / "benchmarks" / "configs" / "acdc_cpu_tuning.yaml")
    settings = {}  # the optimiser's settings of each method (a row may also change a recipe's own option)
    for cell in spec.methods:
        optimiser = {k: v for k, v in cell.options.items() if k in ("optimizer", "lr")}
        settings.setdefault(cell.method, set()).add(tuple(sorted(optimiser.items())))
    assert settings["supervised"] == settings["bcp"] and len(settings["bcp"]) == 2  # SGD 0.01: acdc_cpu's cells


@pytest.mark.parametrize("name", ["acdc_gpu_lease", "acdc_gpu_lease_long"])
def test_gpu_lease_config_fits_one_lease(name):
    """The short GPU configs: gpu profile, ideal first, every cell's calibrated compute under 6 minutes."""
    from pathlib import Path

    spec = load_benchmark(Path(__file__).parents[2] / "benchmarks" / "configs" / f"{name}.yaml")
    assert spec.profile == "gpu" and spec.methods[0].method == "ideal"
    assert len(spec.methods) * spec.budget.total_seconds <= 360


def test_committed_results_long_cpu_config_reuses_the_cpu_calibration():
    """acdc_cpu_long: three times acdc_cpu's budget, the same pre-training, acdc_cpu's committed seconds per step."""
    from pathlib import Path

    repo = Path(__file__).parents[2]
    short, long = (load_benchmark(repo / "benchmarks" / "configs" / f"{n}.yaml") for n in ("acdc_cpu", "acdc_cpu_long"))
    assert long.budget.total_seconds == 3 * short.budget.total_seconds
    assert long.budget.pretrain_seconds == short.budget.pretrain_seconds
    assert Path(repo / long.budget.calibration) == repo / short.out / "calibration.json"
    assert (repo / long.budget.calibration).exists()


def test_shared_calibration_is_copied_not_measured(tmp_path):
    """With budget.calibration holding every stage, nothing is trained: the table is copied as it is."""
    shared = tmp_path / "cal.json"
    shared.write_text(json.dumps({"finetune_supervised": 0.25, "pretrain_ideal-pretrain": 0.5, "finetune_ideal": 0.75}))
    spec = _spec(Budget(total_seconds=60, pretrain_seconds=30, calibration=str(shared)))
    cells = _rows({"name": "sup", "method": "supervised"},
                  {"name": "ideal", "method": "ideal", "pretrain": "ideal-pretrain"})
    assert calibrate(tmp_path / "res", spec, cells)["finetune_ideal"] == 0.75
    assert json.loads((tmp_path / "res" / "calibration.json").read_text()) == json.loads(shared.read_text())
    shared.write_text('{"finetune_supervised": -1}')
    with pytest.raises(IdealsegError, match=r"cal.json: a calibration maps each stage to positive seconds"):
        calibrate(tmp_path / "other", spec, cells)
    spec = _spec(Budget(total_seconds=60, pretrain_seconds=30, calibration=str(tmp_path / "missing.json")))
    with pytest.raises(IdealsegError, match=r"missing.json: cannot read the calibration"):
        calibrate(tmp_path / "third", spec, cells)


def test_new_method_is_calibrated_beside_an_anchor_and_scaled(tmp_path, monkeypatch):
    """A method added later gets steps in proportion to the old table, whatever this machine's speed."""
    import idealseg.benchmark.calibration as bm

    root = tmp_path / "bench"
    root.mkdir()
    (root / "calibration.json").write_text(json.dumps({"finetune_supervised": 0.3}))
    here = {"supervised": 0.1, "unimatch": 0.25}  # this machine is 3x faster than the table's
    monkeypatch.setattr(bm, "_seconds_per_step", lambda root, spec, stage, method, opts: here[method])
    spec = _spec(Budget(total_seconds=60, calibrate_steps=2))
    table = calibrate(root, spec, _rows({"name": "s", "method": "supervised"}, {"name": "u", "method": "unimatch"}))
    assert table["finetune_supervised"] == 0.3 and table["finetune_unimatch"] == pytest.approx(0.75)
    assert json.loads((root / "calibration.json").read_text()) == table


def test_a_run_all_of_one_part_is_priced_as_that_part(tmp_path):
    """labeled_warmup 0 or 1 (or anything beyond) is priced at the part it is, whatever its spelling
    or other options; null is the default warm-up."""
    import idealseg.benchmark.calibration as bm

    (tmp_path / "calibration.json").write_text(json.dumps(
        {"finetune_bcp": 0.72, "finetune_bcp_labeled_warmup-1.0": 0.36, "finetune_bcp_labeled_warmup-0.0": 0.76}))
    assert bm.iterations(tmp_path, "finetune", "bcp", {"labeled_warmup": 1, "optimizer": "adam"}, 360) == 1000
    assert bm.iterations(tmp_path, "finetune", "bcp", {}, 760, {"labeled_warmup": 0}) == 1000
    assert bm.iterations(tmp_path, "finetune", "bcp", {"labeled_warmup": None}, 1000) == int(1000 / (0.25 * 0.36
                                                                                                  + 0.75 * 0.76))


def test_a_begun_stage_keeps_the_steps_it_started_with(tmp_path, capsys):
    """Resumed after the calibration changed, a run keeps its own schedule (a BCP run would otherwise
    fall back from self-training into its warm-up, or stop at once past its new end), and says so."""
    from idealseg.benchmark.cells import _steps_started

    assert _steps_started(tmp_path / "not-begun", 141) == 141
    (tmp_path / "config.yaml").write_text("method: bcp\niterations: 70\n")
    assert _steps_started(tmp_path, 70) == 70 and capsys.readouterr().out == ""
    assert _steps_started(tmp_path, 141) == 70
    assert "continues with the 70 steps it started with (its budget buys 141 now)" in capsys.readouterr().out


def test_a_benchmark_takes_entries_its_shared_calibration_gained_later(tmp_path):
    """acdc_cpu's table gained BCP's parts after the ablation copied it: the ablation's own table takes
    them (and keeps its own entries), so both price BCP alike."""
    shared = tmp_path / "cal.json"
    shared.write_text(json.dumps({"finetune_bcp": 0.72, "finetune_bcp_labeled_warmup-1.0": 0.36,
                                  "finetune_bcp_labeled_warmup-0.0": 0.76}))
    root = tmp_path / "res"
    root.mkdir()
    (root / "calibration.json").write_text(json.dumps({"finetune_bcp": 0.72, "finetune_mine": 0.5}))
    spec = _spec(Budget(total_seconds=60, calibration=str(shared)))
    table = calibrate(root, spec, _rows({"name": "b", "method": "bcp"}))  # nothing measured: all known
    assert table == json.loads((root / "calibration.json").read_text())
    assert table["finetune_mine"] == 0.5 and table["finetune_bcp_labeled_warmup-1.0"] == 0.36


def test_the_compute_axis_prices_each_part_of_a_run(tmp_path):
    """A BCP run's validation points sit at the compute spent: its cheap warm-up first, then the
    dearer self-training (not the budget spread evenly over the steps)."""
    from idealseg.benchmark.calibration import compute_spent

    (tmp_path / "calibration.json").write_text(json.dumps(
        {"finetune_bcp_labeled_warmup-1.0": 0.2, "finetune_bcp_labeled_warmup-0.0": 0.6, "finetune_ideal": 0.7}))
    spent = compute_spent(tmp_path, "finetune", "bcp", {}, {}, 100, [10, 25, 50, 100])
    assert spent == pytest.approx([2.0, 5.0, 5.0 + 25 * 0.6, 5.0 + 75 * 0.6])
    assert compute_spent(tmp_path, "finetune", "ideal", {}, {}, 100, [50]) is None  # one part: spread evenly
    (tmp_path / "calibration.json").write_text(json.dumps({"finetune_bcp": 0.7}))
    assert compute_spent(tmp_path, "finetune", "bcp", {}, {}, 100, [50]) is None  # parts never measured


def test_benchmark_runs_resumes_and_reports(phantom, tmp_path, capsys):
    """Validation is most of a tiny cell's time: every 16 steps (the curves need a point or two, the last
    at the budget's end; a cell's budget buys some 10-40 steps)."""
    cfg = tmp_path / "b.yaml"
    cfg.write_text(
        f"dataset: {phantom}\nprofile: tiny\nlabeled: [2]\noptions: {{threads: 1, val_every: 16}}\n"
        "finetune_options: {optimizer: adam, lr: 0.002}\n"
        "budget: {total_seconds: 2, pretrain_seconds: 1, calibrate_steps: 2}\n"
        "methods:\n  - {name: supervised, method: supervised}\n"
        "  - {name: ideal, method: ideal, pretrain: ideal-pretrain}\n"
    )
    root = run_benchmark(cfg, tmp_path / "res")
    started = capsys.readouterr().out
    assert "ideal_2_seed0: starts (ideal, 2 labelled, seed 0)" in started and "supervised_2_seed0: starts" in started
    import yaml

    ran = {p.parent.name if p.parent.name != "run" else p.parent.parent.name: yaml.safe_load(p.read_text())
           for p in root.glob("*/*/**/config.yaml")}
    assert ran["ideal_2_seed0"]["lr"] == ran["supervised_2_seed0"]["lr"] == 0.002  # finetune_options: fine-tuning
    assert ran["ideal-pretrain_seed0"]["lr"] == 0.001  # pre-training keeps its profile's optimiser
    rows = list(csv.DictReader(open(root / "results.csv")))
    assert [r["name"] for r in rows] == ["ideal", "supervised"] or len(rows) == 2
    assert float(next(r for r in rows if r["name"] == "ideal")["pretrain_seconds"]) > 0
    report = (root / "report.md").read_text()
    assert "| supervised |" in report and "| ideal |" in report
    assert "wall time of these 2 cells" in report
    assert "| supervised | " in report.split("minus ideal's")[1]  # the paired table, ideal as reference
    before = {p: p.stat().st_mtime for p in root.glob("cells/*/result.json")}
    run_benchmark(cfg, tmp_path / "res")  # finished cells are skipped
    assert before == {p: p.stat().st_mtime for p in root.glob("cells/*/result.json")}
    table = json.loads((root / "calibration.json").read_text())
    table["finetune_supervised"] *= 4
    (root / "calibration.json").write_text(json.dumps(table))
    capsys.readouterr()
    run_benchmark(cfg, tmp_path / "res")  # the budget buys other steps now: kept, and named
    kept = [line for line in capsys.readouterr().out.splitlines() if "kept as it ran" in line]
    assert len(kept) == 1 and "supervised_2_seed0" in kept[0] and "move the folder aside" in kept[0]
    assert before == {p: p.stat().st_mtime for p in root.glob("cells/*/result.json")}
    (root / "report.md").unlink()
    run_benchmark(cfg, tmp_path / "res", report_only=True)
    assert "| ideal |" in (root / "report.md").read_text() and (root / "dice_vs_labels.png").exists()
    repriced = (root / "report.md").read_text().split("Cells kept as they ran")[1].split("\n")[0]
    assert "supervised, 2, seed 0: ran" in repriced and "ideal," not in repriced  # only the cell whose price moved
    curves = {c["name"]: c for c in validation_curves(root, load_benchmark(cfg), collect(root))}
    # x is calibrated compute: the last validation of each cell sits at the cell's whole budget (2 s),
    # and pre-training moves ideal's first point to the right of supervised's at the same step
    assert all(abs(c["minutes"][-1] - 2 / 60) < 1e-9 for c in curves.values())
    assert curves["ideal"]["minutes"][0] > 1 / 60 and all(0 <= d <= 1 for d in curves["ideal"]["dice"])
    assert (root / "dice_vs_compute.png").exists()
    (root / "pretrain" / "ideal-pretrain_seed0" / "encoder.pt").unlink()  # as a folder committed without its weights
    (root / "cells" / "ideal_2_seed0" / "result.json").unlink()
    capsys.readouterr()
    run_benchmark(cfg, tmp_path / "res", only=["ideal"])
    again = capsys.readouterr().out
    assert "ideal_2_seed0: resumes" in again and "ideal-pretrain_seed0: pre-trains again" in again
    assert (root / "pretrain" / "ideal-pretrain_seed0" / "encoder.pt").exists()
    cell = root / "cells" / "supervised_2_seed0"  # as a folder copied without its checkpoints
    (cell / "result.json").unlink()
    (cell / "run" / "summary.json").unlink()
    shutil.rmtree(cell / "run" / "checkpoints")
    run_benchmark(cfg, tmp_path / "res", only=["supervised"])
    assert "supervised_2_seed0: starts again (its folder holds no checkpoint)" in capsys.readouterr().out
    assert (root / "cells" / "supervised_2_seed0" / "result.json").exists()


def test_benchmark_runs_one_label_budget_when_asked(phantom, tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text(
        f"dataset: {phantom}\nprofile: tiny\nlabeled: [2, 1]\noptions: {{threads: 1, iterations: 2, val_every: 0}}\n"
        "methods:\n  - {name: supervised, method: supervised}\n"
    )
    root = run_benchmark(cfg, tmp_path / "res", labeled=["1"])
    assert [p.parent.name for p in root.glob("cells/*/result.json")] == ["supervised_1_seed0"]
    with pytest.raises(IdealsegError, match="--labeled 3: not a budget of .*its budgets: 2, 1"):
        run_benchmark(cfg, tmp_path / "res", labeled=["3"])
    with pytest.raises(IdealsegError, match="--seeds 1: not a seed of .*its seeds: 0"):  # not a silent no-op
        run_benchmark(cfg, tmp_path / "res", seeds=[0, 1])


def test_committed_results_bf16_config_matches_the_float32_cells_steps():
    from pathlib import Path

    repo = Path(__file__).parents[2]
    spec = load_benchmark(repo / "benchmarks" / "configs" / "acdc_cpu_bf16.yaml")
    fp32 = json.loads((repo / "benchmarks/results/acdc_cpu/cells/supervised_ssl4mis_7_seed0/result.json").read_text())
    assert spec.options == {"amp": True, "iterations": fp32["steps"], "time_budget": 0}
    assert spec.labeled == [fp32["labeled"]] and [c.method for c in spec.methods] == ["supervised"]


def test_paired_script_pairs_cells_volume_by_volume(tmp_path, capsys):
    from ..conftest import load_benchmark_script

    cells = []
    for name, values in (("a_7_seed0", (0.8, 0.6, 0.5)), ("b_7_seed0", (0.9, 0.6, 0.4))):
        folder = tmp_path / name / "cells" / name
        (folder / "run" / "eval_val").mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"name": name[0], "labeled": "7", "seed": 0, "split": "val"}))
        rows = "".join(f"v{i},{c},{d}\n" for i, d in enumerate(values) for c in ("RV", "LV"))
        (folder / "run" / "eval_val" / "per_volume.csv").write_text("case,class,dice\n" + rows)
        cells.append(folder)  # cells/a_7_seed0 is where result.json's name "a", budget 7 and seed 0 lead
    load_benchmark_script("paired").main([str(cells[0]), "--", str(cells[1])])
    out = capsys.readouterr().out
    assert "B minus A +0.000 ± 0.058 (standard error, 3 pairs)" in out, out


def test_paired_table_differences_and_standard_error():
    """Per-volume pairs: +0.1 and -0.1 average to 0 with standard error 0.1; unpaired seeds are left out."""
    spec = _spec(methods=_rows({"name": "ideal", "method": "ideal"}, {"name": "sup", "method": "supervised"}))
    results = [
        _result("ideal", "7", 0, dice={"a": 0.7, "b": 0.7}),
        _result("sup", "7", 0, dice={"a": 0.8, "b": 0.6}),
        _result("sup", "7", 1, dice={"a": 0.1, "b": 0.1}),  # no ideal run with seed 1
        _result("sup", "3", 0, dice={"a": 0.5, "b": 0.5}),
    ]
    lines = paired_table(results, spec, ["7", "3"], ["ideal", "sup"])
    assert lines[-1] == "| sup | +0.000 ± 0.100 (2) | - |"
    assert paired_table(results, replace(spec, reference="nobody"), ["7"], ["ideal", "sup"]) == []


def test_benchmark_reference_must_name_a_method(tmp_path):
    cfg = tmp_path / "b.yaml"
    cfg.write_text("dataset: d\nlabeled: [2]\nreference: idael\nmethods:\n  - {name: ideal, method: ideal}\n")
    with pytest.raises(IdealsegError, match=r"b.yaml: reference 'idael' is not one of the methods \['ideal'\]"):
        load_benchmark(cfg)


def test_report_shows_seed_spread_where_a_method_has_several_seeds(tmp_path):
    """A method's own `seeds` add runs; its cell shows mean ± standard deviation over them, others stay plain."""
    cfg = tmp_path / "b.yaml"
    cfg.write_text("dataset: d\nlabeled: [7]\nseeds: [0]\nmethods:\n  - {name: ideal, method: ideal, seeds: [0, 1]}\n"
                   "  - {name: sup, method: supervised}\n")
    spec = load_benchmark(cfg)
    assert [c.seeds for c in spec.methods] == [[0, 1], [0]]

    def cell(name, seed, dice):
        return _result(name, "7", seed, unit="mm", machine="m", finetune_seconds=60, pretrain=None,
                       metrics={"mean": {"dice": {"mean": dice}, "hd95": {"mean": 5.0}}})

    report = report_markdown([cell("ideal", 0, 0.7), cell("ideal", 1, 0.8), cell("sup", 0, 0.6)], spec)
    assert "| ideal | 0.750 (± 0.071, 2 seeds) / 5.00 |" in report
    assert "| sup | 0.600 / 5.00 |" in report
    cfg.write_text("dataset: d\nlabeled: [7]\nmethods:\n  - {name: ideal, method: ideal, seeds: 1}\n")
    with pytest.raises(IdealsegError, match=r"b.yaml: seeds of 'ideal' must be a list of integers, got 1"):
        load_benchmark(cfg)


def test_report_says_what_each_cell_was_given(tmp_path):
    """Equal steps (the converged regime: fine-tuning iterations fixed, no clock) are not reported as
    a wall-clock budget, which they are not, and a clock is not reported as steps; pre-training is
    described too."""
    cfg = tmp_path / "b.yaml"
    cell = _result("sup", "3", 0, unit="voxels", machine="m", finetune_seconds=60, pretrain=None,
                   metrics={"mean": {"dice": {"mean": 0.7}, "hd95": {"mean": 5.0}}})
    steps = "dataset: d\nlabeled: [3]\nfinetune_options: {iterations: 6315, time_budget: 0}\nmethods:\n"
    sup = "  - {name: sup, method: supervised}\n"

    def first_line(text):
        cfg.write_text(text)
        return report_markdown([cell], load_benchmark(cfg)).split("; ", 1)[1].split(". Steps", 1)[0]

    assert first_line(steps + sup) == "each cell 6315 fine-tuning steps"
    assert first_line(steps + sup + "  - {name: long, method: supervised, options: {iterations: 12630}}\n") == (
        "each cell 6315 fine-tuning steps, or its row's own")
    assert first_line(steps + sup + "  - {name: i, method: ideal, pretrain: ideal-pretrain, "
                      "pretrain_options: {iterations: 547, time_budget: 0}}\n") == (
        "each cell 6315 fine-tuning steps, pre-training (where a row has it) 547 steps")
    assert first_line(steps + sup + "  - {name: i, method: ideal, pretrain: ideal-pretrain}\n") == (
        "each cell 6315 fine-tuning steps, pre-training (where a row has it) 550 steps")  # the cpu profile's
    assert first_line(steps + sup + "  - {name: i, method: ideal, pretrain: ideal-pretrain, "
                      "pretrain_options: {time_budget: 480}}\n") == (
        "each cell 6315 fine-tuning steps, pre-training (where a row has it) on the clock")
    assert first_line(steps + sup + "  - {name: t, method: supervised, options: {time_budget: 60}}\n") == (
        "each cell a wall-clock budget (the profile's unless its row sets one)")
    assert first_line("dataset: d\nlabeled: [3]\nmethods:\n" + sup) == "each cell 1800 fine-tuning steps"  # cpu's
    assert first_line("dataset: d\nlabeled: [3]\nprofile: gpu\nmethods:\n" + sup) == "each cell 30000 fine-tuning steps"


def test_equal_budget_adds_pretraining_time_only_to_a_clock(tmp_path):
    """With `equal_budget` a cell without pre-training trains as long as a pre-trained one (1200 s of
    fine-tuning plus 480 s of pre-training); an equal-steps cell (`time_budget: 0`) gets no clock from
    it, where it once got 1680 s that could cut its steps."""
    cfg = tmp_path / "b.yaml"
    cfg.write_text("dataset: d\nlabeled: [3]\noptions: {time_budget: 480}\nfinetune_options: {time_budget: 1200}\n"
                   "methods:\n  - {name: sup, method: supervised}\n"
                   "  - {name: i, method: ideal, pretrain: ideal-pretrain}\n"
                   "  - {name: fixed, method: supervised, options: {iterations: 100, time_budget: 0}}\n")
    spec = load_benchmark(cfg)
    sup, pretrained, fixed = (clocked_options(spec, c, "finetune")["time_budget"] for c in spec.methods)
    assert (sup, pretrained, fixed) == (1680, 1200, 0)
    cfg.write_text(cfg.read_text().replace("dataset: d\n", "dataset: d\nequal_budget: false\n"))
    spec = load_benchmark(cfg)
    assert clocked_options(spec, spec.methods[0], "finetune")["time_budget"] == 1200


@pytest.mark.parametrize("methods, extra, expected", [
    ("{name: x, method: unet++}", "", r"method 'x': unknown method 'unet\+\+'"),
    ("{name: x, method: ideal-pretrain}", "", r"method 'x': 'ideal-pretrain' is a pretrain method"),
    ("{name: x, method: ideal, pretrain: ideal}", "", r"method 'x': 'ideal' is a finetune method"),
    ("{name: x, method: ideal, options: {lr: fast}}", "",
     r"method 'x': finetune options: option 'lr' must be a number"),
    ("{name: x, method: ideal, pretrain: ideal-pretrain, pretrain_options: {dense_level: 5}}", "",
     r"method 'x': pretrain options: option dense_level=5 names no encoder level"),
    ("{name: x, method: ideal, pretrain: ideal-pretrain}", "budget: {total_seconds: 60, pretrain_seconds: 60}\n",
     r"budget.pretrain_seconds \(60\) leaves no fine-tuning within total_seconds \(60\)"),
    ("{name: x, method: ideal}", "budget: {total_seconds: -1}\n", r"budget.total_seconds must be a number of seconds"),
    ("{name: x, method: ideal}", "budget: {total: 60}\n", r"budget must map total_seconds"),
    ("{name: x, method: ideal}\n  - {name: x, method: supervised}", "",
     r"method names 'x' and 'x' share the results folder 'x'"),
    ("{name: idéal, method: ideal}\n  - {name: id€al, method: supervised}", "",
     r"method names 'idéal' and 'id€al' share the results folder 'id_al'"),
    ("{name: x, method: ideal}", "labeled: 2\n", r"labeled must be a list of label budgets"),
    ("{name: x, method: ideal}", "finetune_options: {optimizer: rmsprop}\n",
     r"method 'x': finetune options: option 'optimizer' must be one of sgd, adam, got 'rmsprop'"),
    ("{name: x, method: ideal}", "finetune_options: adam\n", r"finetune_options must be a mapping"),
    ("{name: x, method: ideal, options: 3}", "", r"options of 'x' must be a mapping, got 3"),
    ("{name: x, method: ideal}", "finetune_options: {seed: 1}\n",
     r"finetune_options: 'seed' is set per cell by the benchmark; use seeds: instead"),
    ("{name: x, method: ideal, options: {labeled: 3}}", "",
     r"options of 'x': 'labeled' is set per cell by the benchmark; use labeled: instead"),
    ("{name: x, method: ideal}", "finetune_options: {temperature: 0.2}\n",
     r"finetune_options: 'temperature' is read by pre-training only"),
    ("x", "", r"methods must be a list"),
])
def test_benchmark_config_errors_before_any_cell_runs(tmp_path, methods, extra, expected):
    """A typo deep in the matrix would otherwise surface hours in, when its cell starts."""
    cfg = tmp_path / "b.yaml"
    labeled = "" if "labeled:" in extra else "labeled: [2]\n"
    cfg.write_text(f"dataset: d\n{labeled}{extra}methods:\n  - {methods}\n")
    with pytest.raises(IdealsegError, match="b.yaml: " + expected):
        load_benchmark(cfg)


def test_a_variant_is_anchored_on_its_plain_method(tmp_path, monkeypatch):
    """A variant of BCP, alone in its YAML, gets the table's BCP cost times the variant's measured ratio
    to plain BCP here, not its raw cost on this (faster) machine; one that changes only numbers inside
    the step (optimiser, loss weight) gets BCP's cost itself, even over an entry measured earlier."""
    import idealseg.benchmark.calibration as bm

    root = tmp_path / "bench"
    root.mkdir()
    (root / "calibration.json").write_text(json.dumps({"finetune_bcp": 0.72, "finetune_supervised": 0.27,
                                                       "finetune_bcp_unlabeled_weight-1.0": 0.61}))  # measured before
    monkeypatch.setitem(PARTS, "bcp", lambda options: [(1.0, {})])  # one cost (see below)
    here = {(): 0.5, (("mixing", "copy-paste"),): 0.55}  # this machine: plain 0.5 s, the variant 10 % slower
    monkeypatch.setattr(bm, "_seconds_per_step",
                        lambda root, spec, stage, method, opts: here[tuple(sorted(opts.items()))])
    spec = _spec(Budget(total_seconds=60, calibrate_steps=2))
    cells = _rows({"name": "m", "method": "bcp", "options": {"mixing": "copy-paste"}},
                  {"name": "b", "method": "bcp", "options": {"lr": 0.03, "optimizer": "adam"}},
                  {"name": "w", "method": "bcp", "options": {"unlabeled_weight": 1.0}})
    table = calibrate(root, spec, cells)
    assert table["finetune_bcp_mixing-copy-paste"] == pytest.approx(0.72 * 1.1)
    assert table["finetune_bcp_lr-0.03_optimizer-adam"] == 0.72  # numbers inside the step only: not measured
    assert table["finetune_bcp_unlabeled_weight-1.0"] == 0.72  # a scattered old measurement is replaced
    assert json.loads((root / "calibration.json").read_text()) == table


def test_a_cheap_warm_up_is_priced_at_its_own_cost(tmp_path, monkeypatch):
    """BCP's labelled-only warm-up steps cost a supervised step, its self-training steps 2-2.5x that:
    each part is measured as a variant of plain BCP, shared by its optimiser variants, and a run is
    priced by their mix (it was priced as all self-training: 9-15 % fewer steps than its budget buys)."""
    import idealseg.benchmark.calibration as bm

    root = tmp_path / "bench"
    root.mkdir()
    (root / "calibration.json").write_text(json.dumps({"finetune_bcp": 0.72, "finetune_supervised": 0.27}))
    here = {(): 0.5, (("labeled_warmup", 1.0),): 0.2, (("labeled_warmup", 0.0),): 0.55}
    measured = []
    monkeypatch.setattr(bm, "_seconds_per_step", lambda root, spec, stage, method, opts: measured.append(opts)
                        or here[tuple(sorted(opts.items()))])
    spec = _spec(Budget(total_seconds=60, calibrate_steps=2))
    cells = _rows({"name": "b", "method": "bcp"}, {"name": "a", "method": "bcp", "options": {"optimizer": "adam"}})
    table = calibrate(root, spec, cells)
    warm, self_training = table["finetune_bcp_labeled_warmup-1.0"], table["finetune_bcp_labeled_warmup-0.0"]
    assert (warm, self_training) == (pytest.approx(0.72 * 0.4), pytest.approx(0.72 * 1.1))
    assert len(measured) == 3  # plain BCP (the anchor) and the two parts, once for both cells
    for opts in ({}, {"optimizer": "adam"}):
        assert bm.iterations(root, "finetune", "bcp", opts, 1000) == int(1000 / (0.25 * warm + 0.75 * self_training))
    longer = bm.iterations(root, "finetune", "bcp", {}, 1000, {"labeled_warmup": 0.5})
    assert longer == int(1000 / (0.5 * warm + 0.5 * self_training))
    assert bm.iterations(root, "finetune", "bcp", {"labeled_warmup": 0.0}, 1000) == int(1000 / self_training)
    assert bm.iterations(root, "finetune", "supervised", {}, 1000) == int(1000 / 0.27)


def test_paired_script_reads_the_cell_folders_it_is_given(tmp_path, capsys):
    """A superseded cell, moved out of cells/, is paired on its own volumes, not on those of the cell
    that replaced it under the same name (the script's main in this process: its command line is
    `main(sys.argv[1:])`, and a second interpreter's start-up was most of this test's time)."""
    from ..conftest import load_benchmark_script

    def cell(folder, dice):
        (folder / "run" / "eval_val").mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"name": "m", "labeled": "7", "seed": 0, "split": "val"}))
        rows = "".join(f"v{i},{c},{d}\n" for i, d in enumerate(dice) for c in ("RV", "LV"))
        (folder / "run" / "eval_val" / "per_volume.csv").write_text("case,class,dice\n" + rows)

    cell(tmp_path / "bench" / "cells" / "m_7_seed0", [0.8, 0.9])
    cell(tmp_path / "bench" / "superseded" / "m_7_seed0", [0.6, 0.7])
    load_benchmark_script("paired").main([str(tmp_path / "bench" / "superseded" / "m_7_seed0"), "--",
                                          str(tmp_path / "bench" / "cells" / "m_7_seed0")])
    assert "A 0.650, B 0.850; B minus A +0.200" in capsys.readouterr().out


def test_pseudo_label_script_reads_each_cells_last_validation_point(tmp_path, capsys):
    """Rows without a validation Dice (training-loss rows) are skipped; columns a cell lacks stay empty."""
    from ..conftest import load_benchmark_script

    logs = {
        "sup": "step,loss,val_dice,pl_dice_model\n100,0.5,0.70,0.71\n150,0.4,,\n200,0.3,0.80,0.8249\n250,0.2,,\n",
        "bcp": "step,loss,val_dice,pl_dice_student,pl_dice_teacher,pl_disagree\n200,0.3,0.75,0.7,0.69,0.00274\n",
    }
    cells = []
    for name, text in logs.items():
        (tmp_path / name / "run").mkdir(parents=True)
        (tmp_path / name / "run" / "log.csv").write_text(text)
        cells.append(str(tmp_path / name))
    load_benchmark_script("pseudo_labels").main(cells)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| cell | step | val_dice | pl_dice_model | pl_dice_student | pl_dice_teacher | pl_disagree |"
    assert lines[2] == "| sup | 200 | 0.800 | 0.825 |  |  |  |"
    assert lines[3] == "| bcp | 200 | 0.750 |  | 0.700 | 0.690 | 0.003 |"
    for bad, problem in ((tmp_path, "no run/log.csv"), (tmp_path / "bcp", "pl_disagree of step 200 is not a number")):
        if bad != tmp_path:
            (bad / "run" / "log.csv").write_text("step,val_dice,pl_disagree\n200,0.75,nan%\n")
        with pytest.raises(SystemExit) as stop:
            load_benchmark_script("pseudo_labels").main([str(bad)])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and problem in err and len(err.strip().splitlines()) == 1, err
