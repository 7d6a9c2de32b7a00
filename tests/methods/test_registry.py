"""The one method registry: a method is one class in one file, and everything that lists methods
(the CLI's help, the YAML checks, get_method, the generated table) learns of it from the class."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from idealseg.config import method_names, resolve_config
from idealseg.config.method_registry import method_entries
from idealseg.engine.trainer import Trainer
from idealseg.errors import IdealsegError
from idealseg.methods import METHODS, Method, get_method

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_table_matches_the_classes():
    """config/method_table.py (what --help reads without torch) is what the classes declare."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "method_table.py"), "--check"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert {n: (e.stage, e.reads) for n, e in method_entries().items() if n in METHODS} == {
        n: (c.stage, c.reads) for n, c in METHODS.items()}


def test_help_lists_methods_without_importing_torch():
    code = ("import sys; from idealseg.config import method_names; "
            "print(method_names('pretrain'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}).stdout
    assert out.strip() == "['gcl-lcl-pretrain', 'ideal-pretrain'] False"


@pytest.fixture
def forget_my_method():
    """The method a test defines leaves the registry with the test (other tests list the methods)."""
    yield
    from idealseg.config import method_registry

    method_registry._REGISTERED.pop("my-method", None)
    method_registry._owners.pop("my-method", None)
    METHODS.pop("my-method", None)


def test_a_method_defined_in_one_class_trains(phantom, tmp_path, forget_my_method):
    """What docs/extending.md promises: the class alone makes a method, by the name it sets (not its file's)."""

    class LabelledOnly(Method):
        name = "my-method"
        reads = ("lambda_max",)

        def __init__(self, cfg):
            super().__init__(cfg)
            self.net = torch.nn.Conv2d(cfg.in_channels, cfg.num_classes, 3, padding=1)

        def forward(self, images, labels, n_labeled, progress):
            loss = torch.nn.functional.cross_entropy(self.net(images[:n_labeled]), labels.long())
            return {"loss": loss}

        @torch.no_grad()
        def predict(self, images):
            return self.net(images).softmax(1)

    assert get_method("my-method") is LabelledOnly
    assert "my-method" in method_names("finetune") and "my-method" not in method_names("pretrain")
    options = {"method": "my-method", "dataset": str(phantom), "labeled": "2", "val_every": 0, "iterations": 3}
    Trainer(resolve_config("finetune", "tiny", None, options), tmp_path / "run").fit()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    with pytest.raises(IdealsegError, match="pretrain method"):
        get_method("ideal-pretrain", "finetune")


def test_a_taken_name_is_refused():
    with pytest.raises(IdealsegError, match="already taken"):
        type("Impostor", (Method,), {"name": "bcp"})
    assert METHODS["bcp"].__module__ == "idealseg.methods.bcp"
