"""Framing never matters (a padded scan is normalised and segmented as the scan itself), and the scale
search keeps the header's scale unless the evidence for another is strong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from idealseg.data.dataset import Dataset
from idealseg.inference.predictor import Predictor, ScaleEvidence
from idealseg.transforms.normalize import foreground_box, normalize_volume

PAD = ((1, 2), (7, 3), (0, 11))  # every side but one, unevenly: z, then in-plane


def _noisy(shape=(4, 24, 20), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(2.0, 50.0, shape).astype(np.float32)


def _inside(padded: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return padded[tuple(slice(before, before + n) for (before, _), n in zip(PAD, shape, strict=True))]


@pytest.mark.parametrize("method", ["percentile", "minmax"])
@pytest.mark.parametrize("value", [0.0, 7.5, 5000.0])
def test_padding_with_a_constant_changes_no_normalised_value(method, value):
    """Zeros, or any constant (below, inside or above the scan's range), on any side: the scan's own
    voxels normalise to the very same values, and the padding stays within [0, 1]."""
    volume = _noisy()
    padded = np.pad(volume, PAD, constant_values=value)
    assert foreground_box(padded) == tuple(slice(b, b + n) for (b, _), n in zip(PAD, volume.shape, strict=True))
    out = normalize_volume(padded, method)
    assert np.array_equal(_inside(out, volume.shape), normalize_volume(volume, method))
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_a_scan_without_constant_faces_is_normalised_over_all_of_it():
    """No face holds one value: the box is the whole volume, as normalisation always was."""
    volume = _noisy()
    assert foreground_box(volume) == tuple(slice(0, n) for n in volume.shape)
    lo, hi = np.percentile(volume, [0.5, 99.5])
    assert normalize_volume(volume).max() == 1.0
    assert np.count_nonzero(normalize_volume(volume) == 0.0) == np.count_nonzero(volume <= lo)
    assert np.count_nonzero(normalize_volume(volume) == 1.0) == np.count_nonzero(volume >= hi)


@pytest.mark.parametrize("value", [0.0, 300.0])
@pytest.mark.parametrize("search", [False, True])
def test_a_padded_scan_gets_the_scans_mask(run, phantom, value, search):
    """A trained run in physical space: the scan padded to a wider field of view, with zeros or a
    constant, gets the unpadded scan's mask where the scan is and background in the padding, with the
    scale search on and off (the search sees the scan, not its padding)."""
    predictor = Predictor.from_run(run, device="cpu").with_choices(scale_search=search)
    assert predictor.target_spacing > 0
    dataset = Dataset(phantom)
    case = dataset.load(dataset.split("val")[0].id)
    raw = case.image * 900.0 + 40.0  # as a scanner writes it, before normalisation
    spacing = case.spacing[1:]
    plain = predictor.segment(normalize_volume(raw), spacing)
    padded = predictor.segment(normalize_volume(np.pad(raw, PAD, constant_values=value)), spacing)
    assert plain.mask.any()
    assert np.array_equal(_inside(padded.mask, raw.shape), plain.mask)
    assert np.count_nonzero(padded.mask) == np.count_nonzero(plain.mask)
    assert padded.scale == plain.scale


def _disk_volume(radius_px: float, size: int = 96, slices: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius_px**2).astype(np.float32)
    return np.repeat(disk[None], slices, 0)


def _size_sensitive_net(target_area: float, slope: float):
    """A stand-in network whose confidence in its foreground falls by `slope` per unit of difference
    between the bright area it sees and `target_area` (a share of its input): a small slope is a
    model only slightly surer at another scale, a large one a model that clearly is."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        bright = (x > 0.5).float()
        area = bright.mean(dim=(1, 2, 3), keepdim=True)
        sure = (0.99 - slope * (area - target_area).abs()).clamp(0.55, 0.99)
        fg = bright * sure + (1 - bright) * (1 - sure)
        return torch.cat([1 - fg, fg], 1)

    return predict


@pytest.mark.parametrize(("slope", "expected"), [(0.3, (1.0, 1.0)), (4.0, (0.6, 0.7))])
def test_the_search_moves_a_scan_only_on_strong_evidence(slope, expected):
    """A disk 1.5x larger than the network knows: a network slightly surer at 0.67x (about 0.03 more
    confident, what moved in-distribution scans under the old 0.02 margin) keeps the header's scale;
    one clearly surer there moves the scan, and the evidence says so."""
    spacing, input_size = 1.5, 64
    predictor = Predictor(_size_sensitive_net(np.pi * 10**2 / input_size**2, slope), input_size, spacing)
    volume = _disk_volume(15.0)
    evidence = predictor.scale_evidence(volume, (spacing, spacing))
    gain = evidence.confidence[evidence.best] - evidence.confidence[1.0]
    assert (0.02 < gain < 0.05) if slope < 1 else gain > 0.2
    assert evidence.decide(margin=0.02, share=0.0) != 1.0  # the old rule would have moved it either way
    factor = predictor.choose_scale(volume, (spacing, spacing))
    assert expected[0] <= factor <= expected[1], factor
    result = predictor.with_choices(scale_search=True).segment(volume, (spacing, spacing))
    assert result.scale == factor and result.evidence is not None
    if factor != 1.0:
        assert f"at {factor:g}x against" in result.evidence.says(factor)


def test_a_scale_preferred_on_few_slices_is_not_taken():
    """Much more confident overall, but only on 2 of 8 slices: not the agreement a move needs."""
    header = np.full(8, 0.80)
    other = header.copy()
    other[:2] = 0.99  # 2 of 8 slices: below a third
    evidence = ScaleEvidence({1.0: 0.80, 0.6: 0.90}, {1.0: header, 0.6: other})
    assert evidence.decide() == 1.0
    other[:] = 0.90
    assert ScaleEvidence({1.0: 0.80, 0.6: 0.90}, {1.0: header, 0.6: other}).decide() == 0.6
    assert "higher on 8 of 8 slices" in ScaleEvidence({1.0: 0.80, 0.6: 0.90}, {1.0: header, 0.6: other}).says(0.6)


def test_predict_says_the_evidence_for_a_scan_it_moved(run, phantom, tmp_path, monkeypatch, capsys):
    """The line `predict` prints for a scan segmented at another scale gives the confidences compared."""
    import nibabel as nib

    from idealseg.inference.predict import predict_files

    dataset = Dataset(phantom)
    case = dataset.load(dataset.split("val")[0].id)
    sz, sy, sx = case.spacing
    scan = tmp_path / "scans" / "p1.nii.gz"
    scan.parent.mkdir()
    nib.save(nib.Nifti1Image(case.image.transpose(2, 1, 0) * 900.0, np.diag([sx, sy, sz, 1.0])), str(scan))
    strong = ScaleEvidence({1.0: 0.70, 0.8: 0.90}, {1.0: np.full(4, 0.7), 0.8: np.full(4, 0.9)})
    monkeypatch.setattr(Predictor, "scale_evidence", lambda self, volume, spacing: strong)
    predict_files(run, scan, tmp_path / "masks")
    out = capsys.readouterr()
    assert "segmented at 0.8x" in out.out + out.err
    assert "confidence 0.900 at 0.8x against 0.700 at 1x, higher on 4 of 4 slices" in out.out + out.err
