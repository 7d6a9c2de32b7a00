"""IDEALSEG_PLUGINS: a user's own method and importer, in their own file, known to the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import idealseg

PLUGIN = '''
import numpy as np

from idealseg.data.dataset import CaseVolume
from idealseg.data.importers.registry import ImportRequest, WriterSpec, importer


def describe(req):
    return WriterSpec(req.src.name, ["background", "organ"], f"npy:{req.src}", "CT")


@importer("npy", describe=describe)
def run_npy(req, writer):
    for path in sorted(req.src.glob("*_label.npy")):
        case = path.name.removesuffix("_label.npy")
        writer.add(CaseVolume(case, case, np.load(req.src / f"{case}.npy").astype(np.float32),
                              np.load(path).astype(np.uint8), (5.0, 1.0, 1.0)), "train", path)
    writer.finish(normalization=req.normalization)
'''


def _cli(tmp_path: Path, *args, plugins: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IDEALSEG_PLUGINS": plugins,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(idealseg.__file__).parents[1])])}
    return subprocess.run([sys.executable, "-m", "idealseg", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_the_command_line_imports_the_modules_idealseg_plugins_names(tmp_path):
    import numpy as np

    (tmp_path / "my_importers.py").write_text(PLUGIN)
    src = tmp_path / "npy"
    src.mkdir()
    for case in ("a1", "a2"):
        np.save(src / f"{case}.npy", np.random.default_rng(0).random((3, 16, 16)))
        np.save(src / f"{case}_label.npy", np.ones((3, 16, 16), np.uint8))
    refused = _cli(tmp_path, "prepare", "npy", src, tmp_path / "ds")
    assert refused.returncode == 2 and "invalid choice: 'npy'" in refused.stderr
    done = _cli(tmp_path, "prepare", "npy", src, tmp_path / "ds", plugins="my_importers")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ds" / "dataset.json").exists()
    broken = _cli(tmp_path, "info", tmp_path / "ds", plugins="no_such_module")
    assert broken.returncode == 2 and "IDEALSEG_PLUGINS: could not import 'no_such_module'" in broken.stderr
    assert "Traceback" not in broken.stderr
