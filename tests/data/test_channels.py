"""Scans with several channels (nnU-Net's CASE_0000, CASE_0001): prepared, trained on by every method,
predicted from a folder of channel files; one-channel datasets read as before."""

from __future__ import annotations

import csv
import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch

from idealseg.cli import main
from idealseg.config import RunConfig, resolve_config
from idealseg.data.channels import stack_channels
from idealseg.data.dataset import Dataset
from idealseg.data.fingerprint import fingerprint, load_plan
from idealseg.data.importers.phantom import phantom_raw
from idealseg.data.prepare import prepare
from idealseg.data.slice_store import SliceStore
from idealseg.engine.trainer import Trainer
from idealseg.errors import IdealsegError, InputError
from idealseg.inference.predict import predict_files
from idealseg.inference.predictor import Predictor
from idealseg.methods import METHODS
from idealseg.transforms.augment import photometric
from idealseg.transforms.normalize import normalize_channels

from ..conftest import write_nifti

ZOOMS = (1.5, 1.5, 8.0)


def _channels(seed: int, patient: int) -> tuple[list[np.ndarray], np.ndarray]:
    """A phantom scan (x, y, z) as two channels, the second an inverted, differently scaled copy (as an
    ADC map is dark where a T2 is bright), and its label."""
    image, label, _ = phantom_raw(seed, patient, 0)
    first = np.ascontiguousarray(image.transpose(2, 1, 0)).astype(np.float32)
    second = (1000.0 - 3.0 * first).astype(np.float32)
    return [first, second], np.ascontiguousarray(label.transpose(2, 1, 0)).astype(np.uint8)


@pytest.fixture(scope="module")
def two_channel_source(tmp_path_factory):
    """An nnU-Net folder of 4 labelled and 1 unlabelled 2-channel phantom cases, 1 test case, and a
    dataset.json naming the two channels."""
    src = tmp_path_factory.mktemp("chan") / "Dataset500_Two"
    for p in range(6):
        channels, label = _channels(0, p)
        folder = "imagesTs" if p == 5 else "imagesTr"
        for k, data in enumerate(channels):
            write_nifti(src / folder / f"case{p}_{k:04d}.nii.gz", data, ZOOMS)
        if p < 4:
            write_nifti(src / "labelsTr" / f"case{p}.nii.gz", label, ZOOMS)
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2", "1": "ADC"},
                                                  "labels": {"background": 0, "RV": 1, "MYO": 2, "LV": 3},
                                                  "file_ending": ".nii.gz"}))
    return src


@pytest.fixture(scope="module")
def two_channel(two_channel_source, tmp_path_factory):
    return prepare("nifti", two_channel_source, tmp_path_factory.mktemp("ds") / "two")


def test_prepare_stores_each_channel_normalised_on_its_own(two_channel, two_channel_source):
    ds = Dataset(two_channel)
    assert ds.channels == 2 and ds.info["modality"] == "T2, ADC"
    case = ds.load("case0")
    assert case.image.shape == (2, *case.label.shape) and case.image.dtype == np.float32
    assert ds.by_id["case0"].shape == list(case.label.shape)
    assert case.image.min() >= 0 and case.image.max() <= 1
    assert np.corrcoef(case.image[0].ravel(), case.image[1].ravel())[0, 1] < -0.9  # inverted, each in [0, 1]
    plan = load_plan(ds)
    assert plan["normalization"] == ["percentile", "percentile"]
    assert len(fingerprint(ds)["intensity_per_channel"]) == 2


def test_one_channel_dataset_reads_as_before(phantom):
    ds = Dataset(phantom)
    assert ds.channels == 1 and ds.load(ds.cases[0].id).image.ndim == 3
    assert load_plan(ds)["normalization"] == ["percentile"]
    volume = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    assert np.array_equal(normalize_channels(volume), normalize_channels(volume[None])[0])


def test_slice_store_keeps_the_channels(two_channel):
    store = SliceStore.from_dataset(Dataset(two_channel), 32, None)
    assert store.images.shape[1:] == (2, 32, 32)


def test_photometric_draws_each_channel_on_its_own():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 16, 16).expand(4, 2, 16, 16).contiguous()
    out = photometric(x)
    assert out.shape == x.shape and not torch.equal(out[:, 0], out[:, 1])


@pytest.mark.parametrize("files, expected", [
    ({"imagesTr/a_0000.nii.gz": (8, 8, 3), "imagesTr/a_0001.nii.gz": (8, 8, 3), "imagesTr/b_0000.nii.gz": (8, 8, 3)},
     "case 'b' has 1 channel(s) but case 'a' has 2"),
    ({"imagesTr/a_0000.nii.gz": (8, 8, 3), "imagesTr/a_0001.nii.gz": (8, 9, 3)}, "a_0001.nii.gz: channel shape"),
    ({"imagesTr/a_0000.nii.gz": (8, 8, 3), "imagesTr/a_0002.nii.gz": (8, 8, 3)}, "no _0001"),
])
def test_channel_sets_and_grids_are_checked(files, expected, tmp_path):
    for name, shape in files.items():
        write_nifti(tmp_path / "src" / name, np.random.default_rng(0).random(shape).astype(np.float32))
    with pytest.raises(InputError, match=re.escape(expected)):
        prepare("nifti", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unlabelled_scans_need_the_sources_channels(tmp_path):
    volume = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    for k in range(2):
        write_nifti(tmp_path / "src" / "imagesTr" / f"a_{k:04d}.nii.gz", volume)
    write_nifti(tmp_path / "src" / "labelsTr" / "a.nii.gz", np.zeros((8, 8, 3), np.uint8))
    write_nifti(tmp_path / "other" / "b.nii.gz", volume)
    with pytest.raises(InputError, match=re.escape("b.nii.gz: case 'b' has 1 channel(s), the dataset's other cases 2")):
        prepare("nifti", tmp_path / "src", tmp_path / "out", unlabeled=tmp_path / "other")
    assert not (tmp_path / "out").exists()


def test_dataset_json_channel_names_must_match_the_files(tmp_path):
    for k in range(2):
        write_nifti(tmp_path / "src" / "imagesTr" / f"a_{k:04d}.nii.gz", np.ones((8, 8, 3), np.float32))
    (tmp_path / "src" / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T2", "2": "F"}}))
    with pytest.raises(InputError, match="dataset.json names 3 channel"):
        prepare("nifti", tmp_path / "src", tmp_path / "out")


def _options(ds, method, **over):
    """The tiny profile, two steps; fine-tuning on 2 labelled patients."""
    finetune = {"labeled": "2", "val_every": 0} if METHODS[method].stage == "finetune" else {}
    return {"method": method, "dataset": str(ds), "log_every": 1, "threads": 1, "iterations": 2,
            "input_size": 32, "checkpoint_every": 2, **finetune, **over}


@pytest.fixture(scope="module")
def pretrained(two_channel, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pre"
    Trainer(resolve_config("pretrain", "tiny", None, _options(two_channel, "ideal-pretrain")), out).fit()
    return out


@pytest.mark.parametrize("method", sorted(m for m in METHODS if METHODS[m].stage == "pretrain"))
def test_every_pretraining_trains_on_two_channels(method, two_channel, tmp_path):
    Trainer(resolve_config("pretrain", "tiny", None, _options(two_channel, method)), tmp_path / method).fit()
    assert RunConfig.load(tmp_path / method / "config.yaml").in_channels == 2


@pytest.mark.parametrize("method, over", [("ideal", {"mixing": "copy-paste"}), ("ideal", {"weak_to_strong": True}),
                                          ("supervised", {"augmentation": "nnunet"}), ("bcp", {"val_every": 2})])
def test_method_variants_train_on_two_channels(method, over, two_channel, tmp_path):
    """Each variant's own code path (mixing, weak-to-strong, nnU-Net augmentation, validation) takes both
    channels: the run ends its steps with finite losses, records the variant and the two channels."""
    summary = Trainer(resolve_config("finetune", "tiny", None, _options(two_channel, method, **over)),
                      tmp_path / "run").fit()
    cfg = RunConfig.load(tmp_path / "run" / "config.yaml")
    assert summary["steps"] == 2 and cfg.in_channels == 2
    assert {k: getattr(cfg, k) for k in over} == over
    with open(tmp_path / "run" / "log.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]  # validation rows hold no loss
    assert len(losses) == 2 and np.isfinite(losses).all()  # log_every 1: a row a step
    if over.get("val_every"):
        assert 0 <= summary["final_val_dice"] <= 1


@pytest.mark.parametrize("method", sorted(m for m in METHODS if METHODS[m].stage == "finetune"))
def test_every_method_trains_on_two_channels(method, two_channel, pretrained, tmp_path):
    options = {**_options(two_channel, method), "init": str(pretrained)}
    Trainer(resolve_config("finetune", "tiny", None, options), tmp_path / method).fit()
    cfg = RunConfig.load(tmp_path / method / "config.yaml")
    assert cfg.in_channels == 2
    predictor = Predictor.from_run(tmp_path / method, device="cpu")
    case = Dataset(two_channel).load("case1")
    assert predictor.predict(case.image, case.spacing).shape == case.label.shape
    with pytest.raises(IdealsegError, match=r"expected a \[2, Z, H, W\]"):
        predictor.predict(case.image[0], case.spacing)


def test_pretraining_on_two_channels_records_them(pretrained, phantom, tmp_path):
    assert RunConfig.load(pretrained / "config.yaml").in_channels == 2
    options = {**_options(phantom, "supervised"), "init": str(pretrained)}
    with pytest.raises(InputError, match=r"1 image channel\(s\)\); pre-train"):
        Trainer(resolve_config("finetune", "tiny", None, options), tmp_path / "one").fit()


@pytest.fixture(scope="module")
def bcp_run(two_channel, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bcp"
    Trainer(resolve_config("finetune", "tiny", None, _options(two_channel, "bcp")), out).fit()
    return out


def test_predict_groups_channel_files_and_writes_channel_0_geometry(bcp_run, two_channel_source, tmp_path):
    scans = tmp_path / "scans"
    affine = np.diag([*ZOOMS, 1.0])
    affine[:3, 3] = [3.0, -7.0, 11.0]
    channels, _ = _channels(1, 9)
    for k, data in enumerate(channels):
        write_nifti(scans / f"new_{k:04d}.nii.gz", data, ZOOMS, affine)
    written = predict_files(bcp_run, scans, tmp_path / "masks", device="cpu")
    assert [p.name for p in written] == ["new_seg.nii.gz"]
    mask = nib.load(str(written[0]))
    assert mask.shape == channels[0].shape and np.allclose(mask.affine, affine)
    single = predict_files(bcp_run, scans / "new_0000.nii.gz", tmp_path / "one.nii.gz", device="cpu")
    assert np.array_equal(np.asarray(nib.load(str(single[0])).dataobj), np.asarray(mask.dataobj))


def test_predict_refuses_a_scan_missing_a_channel(bcp_run, tmp_path, capsys):
    channels, _ = _channels(1, 9)
    write_nifti(tmp_path / "scans" / "new_0000.nii.gz", channels[0], ZOOMS)
    capsys.readouterr()
    code = main(["predict", str(bcp_run), str(tmp_path / "scans"), str(tmp_path / "masks")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "case 'new' has no channel _0001" in err[-1], err
    assert not (tmp_path / "masks").exists() or not any((tmp_path / "masks").iterdir())


def test_predict_refuses_channels_on_different_grids(bcp_run, tmp_path):
    channels, _ = _channels(1, 9)
    write_nifti(tmp_path / "scans" / "new_0000.nii.gz", channels[0], ZOOMS)
    write_nifti(tmp_path / "scans" / "new_0001.nii.gz", channels[1], (1.4, 1.5, 8.0))
    with pytest.raises(InputError, match="new_0001.nii.gz: channel geometry differs"):
        predict_files(bcp_run, tmp_path / "scans", tmp_path / "masks", device="cpu")


def test_evaluate_and_report_on_two_channels(bcp_run, tmp_path):
    code = main(["evaluate", str(bcp_run), "--split", "val"])
    assert code == 0
    code = main(["report", str(bcp_run)])
    assert code == 0


def test_stacked_channels_are_normalised_each_on_its_own(two_channel_source):
    from idealseg.data.nifti_io import read_scan

    scans = [read_scan(two_channel_source / "imagesTr" / f"case0_{k:04d}.nii.gz") for k in range(2)]
    image = stack_channels(scans, "percentile")
    assert image.shape[0] == 2 and image.max() <= 1 and image.min() >= 0
    assert stack_channels(scans[:1], "percentile").ndim == 3
