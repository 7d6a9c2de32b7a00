"""Importers turn one kind of source into a dataset folder; nothing downstream knows which.

Every module here is imported with the package, so that each importer registers itself
(importers/registry.py); the order below is the order the command line lists them in."""

import importlib
import pkgutil

for _name in ("ssl4mis", "acdc", "nifti", "phantom"):  # the built-in sources first, in the CLI's order
    importlib.import_module(f"{__name__}.{_name}")
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
