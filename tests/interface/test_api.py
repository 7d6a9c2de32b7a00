"""The Python API: the README's example runs as written, and the API agrees with the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import idealseg
from idealseg.data.importers.phantom import phantom_raw

from ..conftest import copy_run, write_nifti

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"test Dice (0|1)\.\d+\n", out), out  # 20 tiny steps: a number, not yet a good one
    assert "(8, 96, 96) ['background'" in out, out
    assert (tmp_path / "example" / "run" / "finetune" / "checkpoints" / "last.pt").is_file()


def test_segment_in_memory_equals_predict_on_a_file(supervised_run, tmp_path):
    run = copy_run(supervised_run, tmp_path / "run")  # a tiny supervised run (4 steps) of its own
    image = phantom_raw(5, 0, 0)[0].astype(np.float32) * 300.0  # [Z, H, W], un-normalised
    scan = write_nifti(tmp_path / "scan.nii.gz", np.transpose(image, (2, 1, 0)))
    idealseg.predict_files(run, scan, tmp_path / "mask.nii.gz")
    from_file = np.transpose(np.asarray(nib.load(tmp_path / "mask.nii.gz").dataobj), (2, 1, 0))
    model = idealseg.load(run)
    assert model.spacing_mm > 0  # the phantom knows its spacing: the run works in physical space
    assert np.array_equal(model.segment(image, spacing=(8.0, 1.5, 1.5)), from_file)
    with pytest.raises(ValueError, match="this model works at .* mm: pass the volume's spacing"):
        model.segment(image)
    summary = idealseg.evaluate(run, split="val")
    assert 0 <= summary["classes"]["mean"]["dice"]["mean"] <= 1 and summary["volumes"] > 0
