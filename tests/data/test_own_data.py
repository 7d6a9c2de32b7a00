"""A Decathlon / nnU-Net v2 folder read as nnU-Net reads it: imagesTs is the test set, scans grouped by
patient on one side of every split and fold, dataset.json's class names, a default validation split."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from idealseg.cli import main
from idealseg.data.dataset import Dataset
from idealseg.data.folds import fold_split, make_folds, read_folds
from idealseg.data.patients import compile_rule, group_by_patient, patient_of
from idealseg.data.prepare import prepare
from idealseg.errors import IdealsegError

from ..conftest import write_nifti


def _scan(rng) -> np.ndarray:
    return rng.random((12, 10, 3)).astype(np.float32)


def _label(rng) -> np.ndarray:
    return rng.integers(0, 3, (12, 10, 3)).astype(np.uint8)


@pytest.fixture
def nnunet_folder(tmp_path):
    """ACDC named the nnU-Net way: two frames per patient, 5 labelled patients, 1 unlabelled frame,
    2 imagesTs scans of other patients, and a dataset.json naming the classes."""
    src, rng = tmp_path / "Dataset027_ACDC", np.random.default_rng(0)
    for p in range(1, 6):
        for frame in ("01", "12"):
            write_nifti(src / "imagesTr" / f"patient{p:03d}_frame{frame}_0000.nii.gz", _scan(rng))
            write_nifti(src / "labelsTr" / f"patient{p:03d}_frame{frame}.nii.gz", _label(rng))
    write_nifti(src / "imagesTr" / "patient006_frame01_0000.nii.gz", _scan(rng))
    for p in (101, 102):
        write_nifti(src / "imagesTs" / f"patient{p}_frame01_0000.nii.gz", _scan(rng))
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "cineMRI"},
                                                  "labels": {"background": 0, "RV": 1, "LV": 2},
                                                  "numTraining": 11, "file_ending": ".nii.gz"}))
    return src


def test_default_rule_groups_frames_phases_and_time_points():
    assert patient_of("patient072_frame01") == patient_of("patient072_frame12") == "patient072"
    assert patient_of("case7_ES") == patient_of("case7_t2") == "case7"
    assert patient_of("liver_12") == "liver_12"  # anything else is its own patient, as nnU-Net treats a case
    rule = compile_rule(r"^(sub-\d+)_")
    assert group_by_patient(["sub-1_T1", "sub-1_T2", "sub-2_T1"], rule) == {"sub-1": ["sub-1_T1", "sub-1_T2"],
                                                                             "sub-2": ["sub-2_T1"]}
    with pytest.raises(IdealsegError, match="does not match case 'x'"):
        patient_of("x", rule)
    with pytest.raises(IdealsegError, match="not a regular expression"):
        compile_rule("(")


def test_nnunet_folder_keeps_imagests_out_and_patients_whole(nnunet_folder, tmp_path, capsys):
    ds = Dataset(prepare("nifti", nnunet_folder, tmp_path / "ds"))
    out = capsys.readouterr().out
    assert "no --val given: 1 of 5 labelled patients validate" in out
    assert "test: 2 scans of 2 patients, 0 labelled" in out
    assert ds.classes == ["background", "RV", "LV"]  # from dataset.json, nothing retyped
    assert {c.id for c in ds.split("test")} == {"patient101_frame01", "patient102_frame01"}
    assert all(c.split != "train" for c in ds.cases if c.id.startswith("patient10"))
    sides = {}
    for c in ds.cases:
        sides.setdefault(c.patient, set()).add(c.split)
    assert all(len(s) == 1 for s in sides.values()), sides  # no patient on both sides
    labelled_patients = {f"patient{p:03d}" for p in range(1, 6)}
    assert len(ds.split("val")) == 2 and {c.patient for c in ds.split("val")} <= labelled_patients
    assert not ds.by_id["patient006_frame01"].labeled and ds.by_id["patient006_frame01"].split == "train"


def test_splits_file_folds_patients_in_nnunets_format(nnunet_folder, tmp_path):
    ds = Dataset(prepare("nifti", nnunet_folder, tmp_path / "ds", val="0"))
    patient = {c.id: c.patient for c in ds.cases if c.split != "test"}
    folds = read_folds(ds.root / "splits.json", patient)
    assert len(folds) == 5
    assert sorted(c for f in folds for c in f["val"]) == sorted(c.id for c in ds.cases if c.labeled)
    for k, fold in enumerate(folds):
        assert not {patient[c] for c in fold["train"]} & {patient[c] for c in fold["val"]}
        assert set(fold_split(folds, k, ds.root).values()) == {"train", "val"}


def test_a_splits_file_that_splits_a_patient_is_refused(tmp_path):
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps([{"train": ["p1_frame01"], "val": ["p1_frame12"]}]))
    with pytest.raises(IdealsegError, match="puts patient 'p1' in both train and val"):
        read_folds(path, {"p1_frame01": "p1", "p1_frame12": "p1"})
    folds = make_folds({"a": ["a1", "a2"], "b": ["b1"], "c": ["c1"]}, seed=3)
    assert len(folds) == 3 and all(("a1" in f["val"]) == ("a2" in f["val"]) for f in folds)


def test_a_patient_in_imagestr_and_imagests_is_a_clear_error(nnunet_folder, tmp_path, capsys):
    write_nifti(nnunet_folder / "imagesTs" / "patient001_frame05_0000.nii.gz", _scan(np.random.default_rng(1)))
    assert main(["prepare", "nifti", str(nnunet_folder), str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "patient 'patient001' has scans in both imagesTr and imagesTs" in err
    assert not (tmp_path / "ds").exists()


def test_patient_regex_from_the_command_line(nnunet_folder, tmp_path, capsys):
    rng = np.random.default_rng(2)
    write_nifti(nnunet_folder / "imagesTr" / "patient011_frame01_0000.nii.gz", _scan(rng))
    write_nifti(nnunet_folder / "labelsTr" / "patient011_frame01.nii.gz", _label(rng))
    assert main(["prepare", "nifti", str(nnunet_folder), str(tmp_path / "ds"), "--val", "1",
                 "--patient-regex", r"^(?P<patient>patient\d\d)\d_"]) == 0
    ds = Dataset(tmp_path / "ds")
    assert {c.patient for c in ds.cases} == {"patient00", "patient01", "patient10"}  # the user's grouping
    out = capsys.readouterr().out
    assert re.search(r"^val: (11 scans of 1 patient, 10|1 scan of 1 patient, 1) labelled$", out, re.M), out


def test_a_broken_source_dataset_json_is_one_line(nnunet_folder, tmp_path, capsys):
    (nnunet_folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "RV": 2}}))
    assert main(["prepare", "nifti", str(nnunet_folder), str(tmp_path / "ds")]) == 2
    assert "dataset.json: labels are numbered [0, 2]; expected 0, 1, 2" in capsys.readouterr().err


def test_an_nnunet_folder_runs_the_whole_chain_with_paths_alone(tmp_path, capsys):
    """prepare, train, evaluate, report, predict on imagesTs and scoring those masks against labelsTs,
    with no flag beyond the paths (and the tiny profile, for time)."""
    from idealseg.data.importers.phantom import phantom_case

    from ..conftest import write_nifti as put

    src = tmp_path / "Dataset001_Phantom"

    for p in range(6):
        folder = ("imagesTr", "labelsTr") if p < 5 else ("imagesTs", "labelsTs")
        for frame in (0, 1):
            case = phantom_case(p, frame, 0)
            name = f"heart{p:02d}_frame{frame:02d}"
            put(src / folder[0] / f"{name}_0000.nii.gz", np.ascontiguousarray(case.image.transpose(2, 1, 0)),
                (1.5, 1.5, 8.0))
            put(src / folder[1] / f"{name}.nii.gz", np.ascontiguousarray(case.label.transpose(2, 1, 0)),
                (1.5, 1.5, 8.0))
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"},
                                                  "labels": {"background": 0, "RV": 1, "Myo": 2, "LV": 3}}))
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["prepare", "nifti", str(src), str(data)]) == 0
    tiny = ["--profile", "tiny", "--threads", "1", "--iterations", "4", "--val-every", "2"]
    assert main(["train", str(data), "--out", str(run), *tiny]) == 0
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    assert main(["report", str(run)]) == 0
    masks = tmp_path / "masks"
    assert main(["predict", str(run), str(src / "imagesTs"), str(masks)]) == 0
    assert main(["evaluate", str(masks), "--labels", str(src / "labelsTs")]) == 0
    out = capsys.readouterr().out
    assert "test: 2 scans of 1 patient, 2 labelled" in out and "| class_1 |" in out
    summary = json.loads((run / "finetune" / "summary.json").read_text())
    assert summary["best_val_dice"] >= 0  # the default validation split made it validate
    trained = Dataset(data)
    assert {c.split for c in trained.cases if c.patient == "heart05"} == {"test"}


def test_another_centres_scans_join_as_unlabelled_training_scans(nnunet_folder, tmp_path, capsys):
    """--unlabeled DIR: the scans of a Decathlon folder's imagesTr (its labels never read) or of a plain
    folder join any source's train split, unlabelled, normalised as that source is."""
    ds = Dataset(prepare("phantom", out=tmp_path / "ds", patients=3, unlabeled=nnunet_folder))
    joined = [c for c in ds.cases if c.meta.get("unlabelled_from")]
    assert len(joined) == 11 and all(c.split == "train" and not c.labeled for c in joined)
    assert {c.patient for c in joined} >= {"patient001", "patient006"}
    assert ds.info["normalization"] == "percentile" and ds.info["unlabelled_from"] == str(nnunet_folder)
    assert "--unlabeled: 11 scans of" in capsys.readouterr().out
    assert main(["prepare", "nifti", str(nnunet_folder), str(tmp_path / "twice"), "--unlabeled",
                 str(nnunet_folder)]) == 2
    assert "already in the dataset; rename the file" in capsys.readouterr().err
    assert not (tmp_path / "twice").exists()


def test_a_fold_moves_whole_patients_between_train_and_val(nnunet_folder, tmp_path):
    root = prepare("nifti", nnunet_folder, tmp_path / "ds")
    seen_val = set()
    for k in range(5):
        ds = Dataset(root, fold=k)
        val = {c.patient for c in ds.split("val")}
        assert len(val) == 1 and not val & {c.patient for c in ds.split("train")}
        assert {c.id for c in ds.split("test")} == {"patient101_frame01", "patient102_frame01"}
        seen_val |= val
    assert seen_val == {f"patient{p:03d}" for p in range(1, 6)}  # every labelled patient validates once
    with pytest.raises(IdealsegError, match="this splits file has folds 0 to 4"):
        Dataset(root, fold=5)


def test_a_run_trains_and_validates_on_its_fold(nnunet_folder, tmp_path):
    import yaml

    from idealseg.pipeline import train

    root = prepare("nifti", nnunet_folder, tmp_path / "ds")
    run = train(root, tmp_path / "run", fold=3, profile="tiny", threads=1, iterations=2, val_every=2)
    finetune = tmp_path / "run" / "finetune"
    assert yaml.safe_load((finetune / "config.yaml").read_text())["fold"] == 3
    validated = json.loads((finetune / "summary.json").read_text())["best_val_dice"]
    assert validated >= 0 and run is not None
    with pytest.raises(IdealsegError, match="resum|fold"):  # another fold is another experiment
        train(root, tmp_path / "run", fold=2, profile="tiny", threads=1, iterations=2, resume=True)


def test_predict_averages_the_folds_of_one_experiment(nnunet_folder, tmp_path, capsys):
    """--ensemble: the probabilities of several runs (here two folds) averaged; runs of another
    experiment (another class set) are refused in one line."""
    import nibabel as nib

    from idealseg.inference.predictor import Predictor
    from idealseg.pipeline import train

    root = prepare("nifti", nnunet_folder, tmp_path / "ds")
    # fine-tuned runs alone: what is averaged is the fine-tuned networks' probabilities
    tiny = {"profile": "tiny", "threads": 1, "iterations": 2, "val_every": 0, "skip_pretrain": True}
    for k in (0, 1):
        train(root, tmp_path / f"fold{k}", fold=k, **tiny)
    runs = [tmp_path / "fold0", tmp_path / "fold1"]
    out = tmp_path / "masks"
    assert main(["predict", str(runs[0]), str(nnunet_folder / "imagesTs"), str(out), "--ensemble", str(runs[1])]) == 0
    both = Predictor.from_runs(runs, device="cpu", scale_search=True)
    volume = Dataset(root).load("patient101_frame01")
    a = Predictor.from_run(runs[0], device="cpu").probabilities(volume.image, volume.spacing)
    b = Predictor.from_run(runs[1], device="cpu").probabilities(volume.image, volume.spacing)
    averaged = both.with_choices(scale_search=False).probabilities(volume.image, volume.spacing)
    assert torch_allclose(averaged, (a + b) / 2)
    assert len(list(out.glob("*_seg.nii.gz"))) == 2 and nib.load(next(out.glob("*_seg.nii.gz"))).shape == (12, 10, 3)
    other = tmp_path / "other_src"
    import shutil

    shutil.copytree(nnunet_folder, other)
    (other / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "A": 1, "B": 2}}))
    train(prepare("nifti", other, tmp_path / "ds2"), tmp_path / "other", **tiny)
    capsys.readouterr()
    assert main(["predict", str(runs[0]), str(nnunet_folder / "imagesTs"), str(tmp_path / "m2"), "--ensemble",
                 str(tmp_path / "other")]) == 2
    assert "its classes" in capsys.readouterr().err and not (tmp_path / "m2").exists()
    assert main(["predict", str(runs[0]), str(nnunet_folder / "imagesTs"), str(tmp_path / "m3"), "--ensemble",
                 str(runs[0] / "finetune")]) == 2
    assert "named twice" in capsys.readouterr().err and not (tmp_path / "m3").exists()
    with pytest.raises(IdealsegError, match="named twice"):  # one path object given twice
        Predictor.from_runs([runs[0], runs[0]], device="cpu")
    assert main(["report", str(runs[0]), "--split", "test"]) == 2  # imagesTs came without labels
    assert "the test split holds no labelled volume" in capsys.readouterr().err


def test_a_validation_split_of_unlabelled_scans_is_said_before_training(nnunet_folder, tmp_path):
    from idealseg.api import finetune

    root = prepare("nifti", nnunet_folder, tmp_path / "ds")
    cases = [c.id for c in Dataset(root).cases if c.split != "test"]
    (root / "splits_final.json").write_text(json.dumps([{"train": [c for c in cases if "006" not in c],
                                                         "val": ["patient006_frame01"]}]))
    assert [c.labeled for c in Dataset(root, fold=0).split("val")] == [False]
    with pytest.warns(UserWarning, match="all unlabelled: this run never validates"):
        finetune(root, tmp_path / "run", method="supervised", labeled="2", profile="tiny", iterations=2,
                 val_every=1, threads=1, fold=0)


def torch_allclose(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, atol=1e-5))


def test_a_target_spacing_far_from_the_datas_is_refused_or_said(nnunet_folder, tmp_path, capsys):
    root = prepare("nifti", nnunet_folder, tmp_path / "ds")  # 1.5 mm in-plane
    tiny = ["--profile", "tiny", "--threads", "1", "--iterations", "2", "--val-every", "0"]
    assert main(["finetune", str(root), "--out", str(tmp_path / "r1"), "--target-spacing", "0.1", *tiny]) == 2
    err = capsys.readouterr().err
    assert "--target-spacing 0.1 mm is 15.0x finer than" in err and "median in-plane spacing 1.5 mm" in err
    assert not (tmp_path / "r1").exists()
    with pytest.warns(UserWarning, match="is 2.5x coarser than"):
        assert main(["finetune", str(root), "--out", str(tmp_path / "r2"), "--target-spacing", "3.75", *tiny]) == 0


def _sides(ds: Dataset) -> dict[str, set[str]]:
    sides: dict[str, set[str]] = {}
    for c in ds.cases:
        sides.setdefault(c.patient, set()).add(c.split)
    return sides


def test_no_importer_puts_a_patient_on_both_sides_of_a_split_a_budget_or_a_fold(nnunet_folder, tmp_path):
    """Every importer, every split, label budget and fold: a patient's scans are on one side."""
    from idealseg.data.budgets import select_budget

    from ..conftest import write_acdc_release, write_ssl4mis

    sources = {"phantom": prepare("phantom", out=tmp_path / "phantom", patients=6),
               "acdc": prepare("acdc", write_acdc_release(tmp_path / "rel", n_patients=4), tmp_path / "acdc",
                               val="1", test="1"),
               "ssl4mis": prepare("ssl4mis", write_ssl4mis(tmp_path / "s4m"), tmp_path / "ssl"),
               "nifti": prepare("nifti", nnunet_folder, tmp_path / "nifti", test="1")}
    for name, root in sources.items():
        ds = Dataset(root)
        assert all(len(s) == 1 for s in _sides(ds).values()), name
        labelled_train = {c.patient for c in ds.split("train") if c.labeled}
        budget = select_budget(ds, "1", 0)
        for c in ds.cases:  # a budget labels whole patients of the train split only
            if c.patient in budget.patients:
                assert c.split == "train", name
        assert set(budget.patients) <= labelled_train, name
        if (root / "splits.json").exists():
            for k in range(len(json.loads((root / "splits.json").read_text()))):
                assert all(len(s) == 1 for s in _sides(Dataset(root, fold=k)).values()), (name, k)


def test_joining_unlabelled_scans_leaves_the_labelled_cases_as_they_were(nnunet_folder, tmp_path):
    import h5py

    plain = Dataset(prepare("phantom", out=tmp_path / "plain", patients=4))
    joined = Dataset(prepare("phantom", out=tmp_path / "joined", patients=4, unlabeled=nnunet_folder / "imagesTs"))
    assert [(c.id, c.patient, c.split, c.labeled) for c in plain.cases] == \
        [(c.id, c.patient, c.split, c.labeled) for c in joined.cases if not c.meta.get("unlabelled_from")]
    for c in plain.cases:
        with h5py.File(plain.case_path(c.id)) as a, h5py.File(joined.case_path(c.id)) as b:
            assert np.array_equal(a["image"][...], b["image"][...]) and np.array_equal(a["label"][...], b["label"][...])


def test_hostile_inputs_of_the_data_protocol_are_refused_or_kept_whole(nnunet_folder, tmp_path, capsys):
    """An unlabelled scan of a known patient follows that patient's split; a group-less patient regex is
    refused; a user's splits_final.json wins over prepare's splits.json."""
    import shutil

    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(nnunet_folder / "imagesTs" / "patient101_frame01_0000.nii.gz", extra / "patient101_frame05_0000.nii.gz")
    ds = Dataset(prepare("nifti", nnunet_folder, tmp_path / "ds", unlabeled=extra))
    assert ds.by_id["patient101_frame05"].split == "test" and all(len(s) == 1 for s in _sides(ds).values())
    with pytest.raises(IdealsegError, match="has no group"):
        compile_rule(r"patient\d")
    root = ds.root
    mine = [{"train": [c.id for c in ds.cases if c.split in ("train", "val") and c.patient != "patient002"],
             "val": [c.id for c in ds.cases if c.patient == "patient002"]}]
    (root / "splits_final.json").write_text(json.dumps(mine))
    assert {c.patient for c in Dataset(root, fold=0).split("val")} == {"patient002"}


def test_scoring_refuses_class_names_that_would_drop_a_class(tmp_path, capsys):
    labels, masks = tmp_path / "labels", tmp_path / "masks"
    ref = np.zeros((8, 8, 3), np.uint8)
    ref[2:5, 2:5] = 1
    ref[5:7, 5:7] = 2
    write_nifti(labels / "p1.nii.gz", ref)
    write_nifti(masks / "p1_seg.nii.gz", ref)
    for names in ("bg,RV,RV", "bg,mean,LV", ",,"):
        assert main(["evaluate", str(masks), "--labels", str(labels), "--classes", names]) == 2
        assert "give distinct, non-empty names" in capsys.readouterr().err
    stray = ref.copy()
    stray[0, 0, 0] = 8
    write_nifti(masks / "p1_seg.nii.gz", stray)
    assert main(["evaluate", str(masks), "--labels", str(labels)]) == 2
    assert "the masks hold label 8" in capsys.readouterr().err
    with pytest.raises(IdealsegError):
        import idealseg

        idealseg.score_masks(masks, labels, classes=3)
    with pytest.raises(IdealsegError):
        prepare("phantom", out=tmp_path / "x", unlabeled=["a"])
    write_nifti(masks / "p1_seg.nii.gz", ref)
    assert main(["evaluate", str(masks), "--labels", str(labels), "--threads", "100000"]) == 2
    assert "--threads 100000: at most" in capsys.readouterr().err
