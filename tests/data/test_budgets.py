"""Label budgets at patient level: counts, fractions, SSL4MIS subsets, files; seeded; train only."""

from __future__ import annotations

import pytest

from idealseg.data.budgets import select_budget
from idealseg.data.dataset import Dataset
from idealseg.data.prepare import prepare
from idealseg.data.slice_store import BatchSampler, SliceStore
from idealseg.errors import IdealsegError

from ..conftest import write_ssl4mis


@pytest.fixture(scope="module")
def ssl(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    return Dataset(prepare("ssl4mis", write_ssl4mis(root / "src", n_patients=6, slices=4), root / "ds"))


def test_count_fraction_file_and_all(ssl, tmp_path):
    assert len(select_budget(ssl, "2").patients) == 2
    assert len(select_budget(ssl, "40%").patients) == 2  # 40 % of 5 training patients
    assert len(select_budget(ssl, "1%").patients) == 1  # a fraction never rounds to nobody
    ids = tmp_path / "ids.txt"
    ids.write_text("patient002\npatient004\n")
    assert select_budget(ssl, f"@{ids}").patients == ["patient002", "patient004"]
    assert len(select_budget(ssl, "all").patients) == 5


def test_same_seed_same_subset_and_never_val(ssl):
    a = [select_budget(ssl, "2", seed=s).patients for s in range(6)]
    assert a[0] == select_budget(ssl, "2", seed=0).patients
    assert len({tuple(x) for x in a}) > 1
    val = {c.patient for c in ssl.split("val")}
    assert all(not (set(x) & val) for x in a)


def test_ssl4mis_subset_is_leading_slices(ssl):
    b = select_budget(ssl, "ssl4mis:1")  # SSL4MIS: 1 patient = the first 32 listed slices
    order = ssl.info["slice_order"]
    assert [f"{c}:{z}" for c, z in b.slices] == order[:32]
    assert b.patients == sorted({c.split("_")[0] for c, _ in b.slices})
    with pytest.raises(IdealsegError, match="needs 68 slices, dataset lists 40"):
        select_budget(ssl, "ssl4mis:3")


def test_budget_errors(ssl, tmp_path):
    with pytest.raises(IdealsegError, match="asks for 9 patients"):
        select_budget(ssl, "9")
    with pytest.raises(IdealsegError, match="at least 1 labelled patient is needed"):
        select_budget(ssl, "0")
    with pytest.raises(IdealsegError, match="expected a count"):
        select_budget(ssl, "seven")
    bad = tmp_path / "ids.txt"
    bad.write_text("patient006\n")  # the validation patient
    with pytest.raises(IdealsegError, match="not labelled training patients"):
        select_budget(ssl, f"@{bad}")


def test_slice_store_marks_only_budget_slices(ssl):
    budget = select_budget(ssl, "2", seed=1)
    store = SliceStore.from_dataset(ssl, 8, budget)
    assert store.images.shape == (40, 1, 8, 8)
    labeled_patients = {p for p, f in zip(store.patients, store.labeled.tolist(), strict=True) if f}
    assert labeled_patients == set(budget.patients)
    exact = select_budget(ssl, "ssl4mis:1")
    store2 = SliceStore.from_dataset(ssl, 8, exact)
    assert int(store2.labeled.sum()) == len(exact.slices)


def test_sampler_shards_without_duplicates():
    import torch

    labeled = torch.tensor([True] * 8 + [False] * 8)
    seen = []
    for rank in range(2):
        s = BatchSampler(labeled, 2, 3, seed=5, rank=rank, world=2)
        seen.append([s.next() for _ in range(2)])
    for step in range(2):
        l0, u0 = seen[0][step]
        l1, u1 = seen[1][step]
        assert not set(l0.tolist()) & set(l1.tolist()) and not set(u0.tolist()) & set(u1.tolist())
        assert all(labeled[i] for i in l0.tolist() + l1.tolist())
        assert not any(labeled[i] for i in u0.tolist() + u1.tolist())
