"""`benchmark`: methods x label budgets x seeds on one dataset and profile, at equal budget.

The YAML is read once into a `BenchmarkSpec` (spec.py); each `Cell` (a row of `methods:` x a label
budget x a seed) records a `CellResult` (cell.py). Equal compute is priced by pricing.py and
measured by calibration.py; cells.py runs the matrix and report.py writes results.csv and report.md.

Cells run one after another and are resumable: a cell whose evaluation summary exists is
skipped, an interrupted one resumes from its last checkpoint. One pre-training serves every
cell that names the same pre-training, but each cell's reported time counts the pre-training
it used; with `equal_budget`, cells without pre-training get its time added to fine-tuning.

With a `budget` entry, seconds become iterations through a calibration (seconds per step of each
method, measured once and kept in calibration.json), so that the comparison is equal in compute
and does not depend on what else the machine was doing while a cell ran. `budget.calibration` names
another run's calibration.json to start from (the same seconds per step, a longer budget).
"""

from idealseg.benchmark.calibration import calibrate
from idealseg.benchmark.cell import Cell, CellResult
from idealseg.benchmark.cells import machine, run_benchmark
from idealseg.benchmark.report import collect, report_markdown, validation_curves, write_results
from idealseg.benchmark.spec import BenchmarkSpec, Budget, MethodEntry, load_benchmark
from idealseg.benchmark.statistics import paired_table, volume_dice

__all__ = ["BenchmarkSpec", "Budget", "Cell", "CellResult", "MethodEntry", "calibrate", "collect", "load_benchmark",
           "machine", "paired_table", "report_markdown", "run_benchmark", "validation_curves", "volume_dice",
           "write_results"]
