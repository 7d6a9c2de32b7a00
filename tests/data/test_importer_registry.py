"""The one importer registry: docs/extending.md's new importer is one function in one file."""

from __future__ import annotations

import numpy as np
import pytest

from idealseg.cli import main
from idealseg.data.dataset import CaseVolume, Dataset
from idealseg.data.importers.registry import IMPORTERS, ImportRequest, WriterSpec, importer, importer_names
from idealseg.data.prepare import prepare
from idealseg.errors import IdealsegError


@pytest.fixture
def npy_importer():
    """A source of `.npy` volumes, each `<case>.npy` with `<case>_label.npy`, defined as a user would."""

    def describe(req: ImportRequest) -> WriterSpec:
        return WriterSpec(req.src.name, ["background", "organ"], f"npy:{req.src}", "CT")

    @importer("npy", describe=describe)
    def run_npy(req: ImportRequest, writer) -> None:
        for path in sorted(req.src.glob("*_label.npy")):
            case = path.name.removesuffix("_label.npy")
            image = np.load(req.src / f"{case}.npy").astype(np.float32)
            writer.add(CaseVolume(case, case, image, np.load(path).astype(np.uint8), (5.0, 1.0, 1.0)),
                       "val" if case.endswith("9") else "train", path)
        writer.finish(normalization=req.normalization)

    yield
    IMPORTERS.pop("npy", None)


def test_a_new_importer_is_one_function_and_prepares_by_name(npy_importer, tmp_path, capsys):
    src = tmp_path / "npy"
    src.mkdir()
    rng = np.random.default_rng(0)
    for case in ("a1", "a2", "a9"):
        np.save(src / f"{case}.npy", rng.random((3, 16, 16)))
        np.save(src / f"{case}_label.npy", (rng.random((3, 16, 16)) > 0.7).astype(np.uint8))
    assert "npy" in importer_names()
    ds = Dataset(prepare("npy", src, tmp_path / "ds"))
    assert ds.classes == ["background", "organ"] and [c.id for c in ds.split("val")] == ["a9"]
    assert main(["prepare", "npy", str(src), str(tmp_path / "ds2")]) == 0  # and from the command line
    assert Dataset(tmp_path / "ds2").info["source"] == f"npy:{src}"


def test_a_taken_importer_name_and_an_unknown_source_are_one_line():
    with pytest.raises(IdealsegError, match="already taken"):
        importer("nifti", describe=lambda req: None)(lambda req, writer: None)
    with pytest.raises(IdealsegError, match="must be one of ssl4mis, acdc, nifti, phantom"):
        prepare("dicom", "x", "y")
