"""A run's configuration, one job a module.

- `run_config`: the RunConfig dataclass (typed, frozen; config.yaml in every run folder);
- `options`: every option's help, readers, choices and range (`OPTIONS`) and its checks;
- `method_registry`: the one method registry (name, stage, reads), readable without importing torch;
- `profiles`: the named sets of defaults (`PROFILES`);
- `yaml_io`: reading a YAML file of options;
- `resolve`: profile < resumed run < YAML < command line, resolved once;
- `resume_rules`: what a resumed run keeps, shares and takes from the dataset or its pre-training.

docs/options.md is generated from `OPTIONS` by scripts/options_doc.py.
"""

from idealseg.config.method_registry import method_names
from idealseg.config.options import OPTIONS, Option, reads
from idealseg.config.profiles import PROFILES
from idealseg.config.resolve import resolve_config
from idealseg.config.resume_rules import FROM_DATASET
from idealseg.config.run_config import RunConfig
from idealseg.config.yaml_io import read_yaml

__all__ = ["FROM_DATASET", "OPTIONS", "PROFILES", "Option", "RunConfig", "method_names", "read_yaml",
           "reads", "resolve_config"]
