"""Your own methods and importers on the command line: `IDEALSEG_PLUGINS=my_methods,my_importers`.

A method or an importer defined in your own module registers itself when the module is imported
(methods/base.py, data/importers/registry.py). In Python you import it yourself; the command line
imports the modules named in IDEALSEG_PLUGINS (comma-separated import paths, found on PYTHONPATH)
before it reads its arguments, so `idealseg prepare npy ...` and `idealseg evaluate RUN` of a run
trained with your method work as the built-in ones do.
"""

from __future__ import annotations

import importlib
import os

from idealseg.errors import IdealsegError

VARIABLE = "IDEALSEG_PLUGINS"


def load_plugins() -> list[str]:
    """Import every module IDEALSEG_PLUGINS names (once each); one line naming a module that fails."""
    names = [n.strip() for n in os.environ.get(VARIABLE, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an ImportError, or the module's own error: named, not a traceback
            raise IdealsegError(f"{VARIABLE}: could not import {name!r} ({type(exc).__name__}: {exc}); give "
                                "import paths found on PYTHONPATH") from None
    return names


def hint() -> str:
    """What an unknown method or source name's message adds: how to make one of your own known."""
    return f"a method or source of your own: import its module first, or name it in {VARIABLE} for the CLI"
