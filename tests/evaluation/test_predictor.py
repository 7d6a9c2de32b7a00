"""The one predictor: one sliding-window call site, masks as the plain algorithm gives them, each scan
read once by `predict`, and every entry point (predict, segment, the predictor) agreeing."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

import idealseg
import idealseg.api
from idealseg.data.importers.phantom import phantom_raw
from idealseg.inference import predict as predict_module
from idealseg.inference.predict import run_normalization
from idealseg.inference.predictor import Predictor
from idealseg.precision import autocast_dtype
from idealseg.transforms.normalize import normalize_volume
from idealseg.transforms.resample import resample, resampled_size

from ..conftest import copy_run, write_nifti

SRC = Path(idealseg.__file__).resolve().parent


def _calls(name: str) -> list[str]:
    """'module.py:line' of every call of a function or method called `name` in idealseg's source."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_the_sliding_window_and_the_resampling_each_have_one_call_site():
    assert len(_calls("sliding_window_inference")) == 1, _calls("sliding_window_inference")
    resampling = [c for c in _calls("interpolate") if not c.startswith("transforms/augment.py")]  # blur, not grid
    assert len(resampling) == 1 and resampling[0].startswith("transforms/resample.py"), resampling


def test_every_public_function_of_the_api_says_args_returns_and_raises():
    for name in idealseg.api.__all__:
        obj = getattr(idealseg.api, name)
        doc = inspect.getdoc(obj) or ""
        if inspect.isclass(obj):
            assert "Attributes:" in doc, name
            doc = inspect.getdoc(obj.segment)
        assert all(part in doc for part in ("Args:", "Returns:", "Raises:")), name


@pytest.fixture(scope="module")
def runs(phantom, supervised_run, tmp_path_factory) -> dict[str, Path]:
    """Tiny runs of both geometries: physical space (the phantom's spacing: a copy of the suite's run)
    and slices resized."""
    root = tmp_path_factory.mktemp("runs")
    options = dict(method="supervised", labeled="2", profile="tiny", iterations=3, val_every=0, threads=1)
    return {"physical": copy_run(supervised_run, root / "physical"),
            "resized": idealseg.finetune(phantom, root / "resized", target_spacing="none", **options)}


def _plain(predictor: Predictor, image: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """The algorithm written out from public pieces, not the predictor's code: slices to the run's grid,
    the network (a Gaussian sliding window in physical space), probabilities back, argmax."""
    cfg = predictor.cfg
    h, w = image.shape[1:]
    grid = resampled_size((h, w), spacing, cfg.spacing_mm) if cfg.spacing_mm else (cfg.input_size,) * 2
    batch = max(1, min(32, 2**24 // (grid[0] * grid[1])))
    dtype = autocast_dtype(torch.device("cpu"), cfg.amp)

    def net(x):
        return predictor.network(x.contiguous(memory_format=torch.channels_last)).float()

    masks = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        vol = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None]
        for start in range(0, len(vol), batch):
            slices = resample(vol[start : start + batch], grid, "bilinear")
            if cfg.spacing_mm:
                probs = sliding_window_inference(slices, (cfg.input_size,) * 2, batch, net, overlap=0.5,
                                                 mode="gaussian")
            else:
                probs = net(slices)
            probs = resample(probs.float(), (h, w), "bilinear")
            masks.append(probs.contiguous(memory_format=torch.channels_last).argmax(1).to(torch.uint8))
    return torch.cat(masks).numpy()


@pytest.mark.parametrize("geometry", ["physical", "resized"])
def test_the_predictor_gives_the_plain_algorithms_mask_and_every_entry_point_agrees(runs, geometry, tmp_path):
    run = runs[geometry]
    raw = phantom_raw(5, 0, 0)[0].astype(np.float32) * 300.0  # [Z, H, W], un-normalised
    spacing = (8.0, 1.5, 1.5)
    predictor = Predictor.from_run(run, device="cpu", largest_component=False)
    image = normalize_volume(raw, run_normalization(predictor.cfg))
    expected = _plain(predictor, image, spacing[1:])
    assert len(np.unique(expected)) > 1  # not one label everywhere: a comparison that can fail
    assert np.array_equal(predictor.predict(image, spacing), expected)
    model = idealseg.load(run, device="cpu")
    segmented = model.segment(raw, spacing=spacing, largest_component=False, scale_search=False)
    assert np.array_equal(segmented, expected)
    scan = write_nifti(tmp_path / "scan.nii.gz", np.transpose(raw, (2, 1, 0)), zooms=spacing[::-1])
    idealseg.predict_files(run, scan, tmp_path / "mask.nii.gz", device="cpu", largest_component=False,
                           scale_search=False)
    from_file = np.transpose(np.asarray(nib.load(tmp_path / "mask.nii.gz").dataobj), (2, 1, 0))
    assert np.array_equal(from_file, expected)
    flipped = predictor.with_choices(flip_tta=True)
    probabilities = flipped.probabilities(image, spacing)
    assert probabilities.shape[0] == image.shape[0] and probabilities.shape[2:] == image.shape[1:]
    assert torch.allclose(probabilities.sum(1), torch.ones(()), atol=1e-2)  # averaged over the flips
    agreement = (probabilities.argmax(1).numpy() == flipped.predict(image, spacing)).mean()
    assert agreement > 0.999, agreement  # the mask is the argmax of the sum: a tie may round either way


def _scan_folder(folder: Path, n: int = 3) -> list[Path]:
    return [write_nifti(folder / f"p{i}.nii.gz", np.transpose(phantom_raw(5, i, 0)[0] * 300.0, (2, 1, 0)))
            for i in range(n)]


def _count_loads(monkeypatch) -> dict[str, int]:
    counts: dict[str, int] = {}
    load = nib.load

    def counting(path, *args, **kwargs):
        counts[Path(path).name] = counts.get(Path(path).name, 0) + 1
        return load(path, *args, **kwargs)

    monkeypatch.setattr(nib, "load", counting)
    return counts


def test_predict_reads_each_scan_once_and_a_folder_too_large_to_hold_gives_the_same_masks(runs, tmp_path,
                                                                                          monkeypatch):
    scans = _scan_folder(tmp_path / "scans")
    counts = _count_loads(monkeypatch)
    once = idealseg.predict_files(runs["physical"], tmp_path / "scans", tmp_path / "once", device="cpu")
    assert counts == {p.name: 1 for p in scans}, counts
    counts.clear()
    monkeypatch.setattr(predict_module, "HELD_BYTES", 0)  # nothing held: each scan read again to segment it
    twice = idealseg.predict_files(runs["physical"], tmp_path / "scans", tmp_path / "twice", device="cpu")
    assert counts == {p.name: 2 for p in scans}, counts
    for a, b in zip(once, twice, strict=True):
        assert np.array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))


def test_unlabelled_scans_join_at_the_scale_the_runs_search_picks(runs, phantom, tmp_path, monkeypatch, capsys):
    """`prepare --unlabeled DIR --unlabeled-scale-from RUN`: each scan's in-plane spacing is its header's
    times what RUN's scale search picks for it (its z spacing and the labelled cases untouched); a run
    without physical space, or the option without --unlabeled, is one line and exit 2."""
    from idealseg import prepare
    from idealseg.cli import main
    from idealseg.data.dataset import Dataset

    scans = _scan_folder(tmp_path / "other", n=2)
    plain = Dataset(prepare("phantom", out=tmp_path / "plain", patients=3, unlabeled=scans[0].parent))
    predictor = Predictor.from_run(runs["physical"], device="cpu")
    expected = {}
    for case in plain.cases:
        if case.meta.get("unlabelled_from"):
            volume = plain.load(case.id)
            expected[case.id] = predictor.choose_scale(volume.image, volume.spacing[1:])
    joined = Dataset(prepare("phantom", out=tmp_path / "joined", patients=3, unlabeled=scans[0].parent,
                             unlabeled_scale_from=runs["physical"]))
    for case in joined.cases:
        before = plain.by_id[case.id].spacing
        factor = expected.get(case.id, 1.0)
        assert case.spacing == pytest.approx((before[0], before[1] * factor, before[2] * factor)), case.id
    assert "--unlabeled-scale-from:" in capsys.readouterr().out
    monkeypatch.setattr(Predictor, "choose_scale", lambda self, volume, spacing: 0.5)
    halved = Dataset(prepare("phantom", out=tmp_path / "halved", patients=3, unlabeled=scans[0].parent,
                             unlabeled_scale_from=runs["physical"]))
    for case in halved.cases:
        before, unlabelled = plain.by_id[case.id].spacing, case.id in expected
        assert case.spacing[1] == pytest.approx(before[1] * (0.5 if unlabelled else 1.0)), case.id
        assert case.meta.get("header_spacing_multiple") == (0.5 if unlabelled else None)
    assert main(["prepare", "phantom", str(tmp_path / "r"), "--unlabeled", str(scans[0].parent),
                 "--unlabeled-scale-from", str(runs["resized"])]) == 2
    assert "not in physical space" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["prepare", "phantom", str(tmp_path / "s"), "--unlabeled-scale-from", str(runs["physical"])]) == 2
    assert "give --unlabeled DIR too" in capsys.readouterr().err
