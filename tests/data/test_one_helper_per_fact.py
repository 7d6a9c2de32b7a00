"""One helper per fact: the in-plane spacing, the plan's median and a file's case id are each derived
in one place, so that the plan and the checks of a run, and import, predict and scoring, agree."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from idealseg.data.fingerprint import _geometry
from idealseg.data.target_spacing import resolve_spacing
from idealseg.errors import IdealsegError
from idealseg.transforms.spacing import in_plane, median_in_plane


def _anisotropic(root: Path) -> SimpleNamespace:
    """A dataset whose slices are 1 x 8 mm: the median of each case's finer side (1 mm) is not the
    plan's median in-plane spacing (4.5 mm, of both sides)."""
    cases = [SimpleNamespace(id=f"c{i}", spacing=(5.0, 1.0, 8.0), shape=(2, 16, 16)) for i in range(3)]
    return SimpleNamespace(root=root, cases=cases, channels=1, info={})


def test_the_far_off_check_measures_from_the_plans_median(tmp_path):
    ds = _anisotropic(tmp_path)
    plan_median = _geometry(ds)["in_plane_spacing_mm"]["median"]
    assert plan_median == median_in_plane(c.spacing for c in ds.cases) == 4.5
    with pytest.warns(UserWarning, match=r"coarser than .* median in-plane spacing 4\.5 mm"):
        assert resolve_spacing("12", ds) == 12.0  # 2.7x the plan's median: said, not refused
    with pytest.raises(IdealsegError, match=r"finer than .* median in-plane spacing 4\.5 mm"):
        resolve_spacing("0.9", ds)  # 5x finer than the plan's median


def test_in_plane_of_a_zhw_or_hw_spacing():
    assert in_plane((3, 1.5, 2)) == in_plane([1.5, 2.0]) == (1.5, 2.0)
    assert in_plane(None) is None and in_plane(()) is None
    assert median_in_plane([None, (1, 2, 4)]) == 3.0 and median_in_plane([None]) is None


@pytest.mark.parametrize(("name", "stem", "case"), [
    ("p1.nii.gz", "p1", "p1"), ("p1.nii", "p1", "p1"), ("p1_0000.nii.gz", "p1_0000", "p1"),
    ("img_0003.nii", "img_0003", "img_0003"), ("p1_seg.nii.gz", "p1_seg", "p1_seg"), ("notes.txt", "notes.txt", None),
])
def test_one_rule_names_a_nifti_file_and_its_case(name, stem, case):
    from idealseg.data.channels import case_of_file, split_channel
    from idealseg.data.nifti_io import is_nifti, nifti_stem
    from idealseg.inference.predict import _output_name

    path = Path("folder") / name
    assert nifti_stem(path) == stem and is_nifti(path) == (case is not None)
    if case is not None:
        assert case_of_file(path) == case and _output_name(path) == f"{case}_seg.nii.gz"
    assert split_channel(Path("p1_0002.nii.gz")) == ("p1", 2) and split_channel(Path("p1_0002.txt")) is None
