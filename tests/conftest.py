"""Shared fixtures: tiny synthetic datasets written by the tests, and the real ACDC data if present."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from idealseg.data.prepare import prepare
from idealseg.pipeline import run_stage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ACDC = SHARED / "acdc"
ACDC_NIFTI = SHARED / "acdc-nifti-sample"

# torchrun on two CPU processes, its rendezvous on a free port (a fixed 29500 can be taken or lingering)
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m")


def load_benchmark_script(name: str):
    """A script of benchmarks/ (not a package) imported as a module, to test its functions."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (expected beside the repository in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """5 phantom patients: 3 train, 1 val, 1 test."""
    return prepare("phantom", out=tmp_path_factory.mktemp("ds") / "phantom", patients=5, seed=0)


# the tiny supervised run most tests of a run folder read: 4 steps, checkpoints at 2 and 4, no validation
SUPERVISED = {"method": "supervised", "labeled": "2", "profile": "tiny", "threads": 1, "iterations": 4,
              "checkpoint_every": 2, "val_every": 0}


@pytest.fixture(scope="session")
def supervised_run(phantom, tmp_path_factory) -> Path:
    """A finished tiny supervised run on the phantom (SUPERVISED), trained once for the whole suite.
    Never written to: a test or module fixture takes its own copy (copy_run), since what one test writes
    into a run folder (an evaluation, a user's file, a resume) must never meet another test."""
    out = tmp_path_factory.mktemp("supervised") / "run"
    run_stage("finetune", phantom, out, **SUPERVISED)
    return out


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a trained run folder at `dest`, to write into (run folders are portable: tests/engine/
    test_portable_runs.py)."""
    return Path(shutil.copytree(run, dest, symlinks=True))


def write_ssl4mis(root: Path, n_patients: int = 4, slices: int = 3, size: int = 16, seed: int = 0) -> Path:
    """A miniature SSL4MIS folder: train slices of n-1 patients (2 frames), 1 val patient's volumes."""
    rng = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True)
    slice_names, train, val = [], [], []
    for p in range(1, n_patients + 1):
        for frame in (1, 2):
            case = f"patient{p:03d}_frame{frame:02d}"
            image = rng.random((slices, size, size)).astype(np.float32)
            label = rng.integers(0, 4, (slices, size, size)).astype(np.uint8)
            if p == n_patients:
                with h5py.File(root / "data" / f"{case}.h5", "w") as f:
                    f["image"], f["label"] = image, label
                val.append(case)
                continue
            train.append(case)
            for z in range(slices):
                name = f"{case}_slice_{z + 1}"
                with h5py.File(root / "data" / f"{name}.h5", "w") as f:
                    f["image"], f["label"] = image[z], label[z]
                slice_names.append(name)
    order = list(rng.permutation(slice_names))
    (root / "train_slices.list").write_text("\n".join(order) + "\n")
    (root / "train.list").write_text("\n".join(train) + "\n")
    (root / "val.list").write_text("\n".join(val) + "\n")
    return root


def write_nifti(path: Path, data: np.ndarray, zooms=(1.5, 1.5, 8.0), affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([*zooms[:3], 1.0]) if data.ndim >= 3 else np.eye(4)
        affine[:3, 3] = [10.0, -20.0, 5.0]
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms((tuple(zooms) + (1.0,) * 4)[: data.ndim])
    nib.save(img, str(path))
    return path


def write_acdc_release(root: Path, n_patients: int = 2, with_cfg: bool = True, seed: int = 0) -> Path:
    """A miniature ACDC release: arrays (x, y, z), spacing in the header, Info.cfg optional."""
    rng = np.random.default_rng(seed)
    for p in range(1, n_patients + 1):
        pdir = root / f"patient{p:03d}"
        pdir.mkdir(parents=True)
        es = 7 + p
        for frame in (1, es):
            image = (rng.random((20, 18, 4)) * 300).astype(np.float32)
            label = rng.integers(0, 4, (20, 18, 4)).astype(np.uint8)
            write_nifti(pdir / f"patient{p:03d}_frame{frame:02d}.nii.gz", image, (1.4, 1.4, 10.0))
            write_nifti(pdir / f"patient{p:03d}_frame{frame:02d}_gt.nii.gz", label, (1.4, 1.4, 10.0))
        if with_cfg:
            (pdir / "Info.cfg").write_text(f"ED: 1\nES: {es}\nGroup: DCM\nHeight: 180.0\nNbFrame: 30\nWeight: 80.0\n")
    return root



def pytest_configure(config) -> None:
    """Under pytest-xdist (`-n 2`, the README's command) each worker trains on one core: two workers of
    two threads each would fight over the two cores (one-thread jobs side by side are the faster)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # the children the tests start (torchrun, the CLI) too

def restore_ctrl_c() -> None:
    """`preexec_fn` of a child a test interrupts: Ctrl-C back to its default. A shell that starts the suite
    in the background (`nohup pytest &`, many CI runners) ignores SIGINT, its children inherit that, and
    idealseg rightly leaves an ignored Ctrl-C ignored: the tests of what Ctrl-C does must undo it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C raises KeyboardInterrupt in this process for the test, even where the suite was started
    with SIGINT ignored (see restore_ctrl_c)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
