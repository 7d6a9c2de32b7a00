"""The one predictor: a trained network and every choice about how it segments a volume.

`predict`, `evaluate`, validation during training and the API's `Segmenter` all segment through a
`Predictor`, so a mask does not depend on which of them asked for it. It is built from a run folder
(`from_run`) or from a method and config in memory (`from_method`, validation during training).

Two geometries, as the run was trained (RunConfig.spacing_mm):
- no physical space: each slice resized to the input size, as SSL4MIS does;
- physical space: each slice resampled to the run's spacing, then a Gaussian-weighted sliding
  window of the input size over it (MONAI's `sliding_window_inference`, half-patch overlap as
  nnU-Net), so a slice of any field of view is seen at the scale the network learnt.
A run trained on scans of several channels (RunConfig.in_channels > 1) takes [C, Z, H, W] volumes, every
channel on one grid, and a one-channel run [Z, H, W] ones (data/channels.py); either way the mask is
[Z, H, W]. Probabilities go back to the volume's own grid before the argmax. Only the uint8 mask leaves the
device: the argmax is taken where the model ran, so a GPU does not ship Z x C x H x W floats to the
host for every volume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from idealseg.config import RunConfig
from idealseg.data.channels import as_channels
from idealseg.errors import IdealsegError
from idealseg.inference.quality import ConfidenceTally
from idealseg.precision import autocast_dtype
from idealseg.runfolder.folder import load_run, run_largest_component
from idealseg.transforms.components import largest_components
from idealseg.transforms.normalize import Box, check_volume, foreground_box
from idealseg.transforms.resample import oversize, resample, resampled_size
from idealseg.transforms.spacing import in_plane

OVERLAP = 0.5
PROBABILITY_ELEMENTS = 2**24  # a chunk's probabilities are kept near 1 GB (float32, all classes)

# Scale search. Another centre's scans may show the anatomy at another size than their header's spacing
# implies (a resampled export whose header kept the old spacing, a population of larger hearts): a model
# in physical space then sees every structure too large or too small. On 10 MS-CMRSeg bSSFP scans a model
# trained on ACDC scored 0.569 at the header's spacing, 0.856 at the best fixed multiple (0.6x) and 0.855
# with this search (its 0.02 margin of then); ACDC validation 0.796 with it, 0.801 without
# (benchmarks/cross_centre.py).
SCALE_FACTORS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.15, 1.3)  # multiples of the header's in-plane spacing
SCALE_SLICES = 8  # slices of the volume's middle that the search looks at
# The evidence another scale needs (`ScaleEvidence.decide`). A model is often a little more confident at
# another scale on scans just like its training data (gains of 0.01-0.04 on most ACDC validation scans),
# and a 0.02 margin moved half of them, some for the worse (0.51 -> 0.32; a hostile test: 0.836 -> 0.684);
# another centre's scans gained 0.09-0.15 (benchmarks/scripts/scale_search_check.py). A majority of
# slices was asked for too and measured: it blocked the best moves, end-systolic frames whose apical
# slices hold little foreground (0.41 -> 0.67 kept at 0.41), so only a third is asked for.
SCALE_MARGIN = 0.05  # the chosen scale's confidence must beat the header's by this much
SCALE_SLICE_SHARE = 1 / 3  # ... and be higher on this share of the slices looked at, not one or two

Network = Callable[[torch.Tensor], torch.Tensor]
# what the runs of an ensemble must share: the averaged probabilities mean the same classes, at the same
# scale, from the same inputs
ENSEMBLE_KEYS = ("classes", "num_classes", "spacing_mm", "input_size", "in_channels", "normalization")


@dataclass(frozen=True)
class ScaleEvidence:
    """What the scale search saw: for each multiple of the header's spacing tried, the mean top-class
    probability over what the model calls foreground, over all the slices looked at (`confidence`) and
    on each of them (`per_slice`, 0 where a slice has no foreground), and the multiple it chose."""

    confidence: dict[float, float]
    per_slice: dict[float, np.ndarray]

    @property
    def best(self) -> float:
        """The multiple the model is most confident at."""
        return max(self.confidence, key=self.confidence.get)

    def wins(self, factor: float) -> int:
        """On how many of the slices looked at `factor` is more confident than the header's scale."""
        return int(np.count_nonzero(self.per_slice[factor] > self.per_slice.get(1.0, 0.0)))

    def decide(self, margin: float | None = None, share: float | None = None) -> float:
        """The header's scale (1) unless the evidence for another is strong: the most confident multiple
        beats the header's by `margin` (SCALE_MARGIN) over all slices and on at least `share`
        (SCALE_SLICE_SHARE) of the slices one by one, so that one or two slices, or a slight preference
        everywhere, do not move a scan that looks like the training data."""
        margin = SCALE_MARGIN if margin is None else margin
        share = SCALE_SLICE_SHARE if share is None else share
        best, header = self.best, self.confidence.get(1.0, 0.0)
        slices = len(self.per_slice[best])
        if best == 1.0 or self.confidence[best] <= header + margin or self.wins(best) < share * slices:
            return 1.0
        return best

    def says(self, factor: float) -> str:
        """The evidence in words, for the line `predict` prints about a scan it moved."""
        header = self.confidence.get(1.0)
        at_header = f"{header:.3f} at 1x" if header is not None else "1x not tried"
        return (f"confidence {self.confidence[factor]:.3f} at {factor:g}x against {at_header}, higher on "
                f"{self.wins(factor)} of {len(self.per_slice[factor])} slices")


@dataclass(frozen=True)
class Prediction:
    """A volume's mask, uint8 [Z, H, W], the multiple of its in-plane spacing it was segmented at (1
    unless the scale search chose another: `predict` names the scans where it did), and its quality
    score (inference/quality.py: the mean confidence over what the mask calls foreground, from the
    probabilities the mask was made from; the lower, the likelier a poor mask)."""

    mask: np.ndarray
    scale: float = 1.0
    quality: float = 0.0
    evidence: ScaleEvidence | None = None  # what the scale search saw, where it ran


@dataclass(frozen=True)
class Predictor:
    """A network and how it segments: geometry, device, precision, flip-TTA, scale search, post-processing.

    `network` maps [B, in_channels, h, w] slices to class probabilities [B, C, h, w] (a method's `predict`).
    `target_spacing` > 0: the run works in physical space at that in-plane spacing (mm), and a volume's
    spacing is needed. `precision`: the autocast dtype (None: float32), as `idealseg.precision` decides
    for the run's device and `amp` option, so a model trained in bfloat16 is served in it.
    `largest_component` keeps each class's largest 3D connected component (transforms/components.py).
    `scale_search` (physical space only) first picks the scale the model is most confident at
    (`choose_scale`), for scans whose anatomy is not at the size their header's spacing implies.
    Frozen: a caller that wants other choices for one volume makes a copy (`with_choices`).
    """

    network: Network
    input_size: int
    target_spacing: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: torch.dtype | None = None
    flip_tta: bool = False
    scale_search: bool = False
    largest_component: bool = False
    batch_size: int = 32
    cfg: RunConfig | None = field(default=None, compare=False)  # what the run was trained with, for callers
    run_dir: Path | None = None
    in_channels: int = 1  # volumes are [Z, H, W] where 1, [in_channels, Z, H, W] where more

    @classmethod
    def from_method(cls, method: Any, cfg: RunConfig, device: torch.device | str, *, amp: bool | None = None,
                    flip_tta: bool = False, scale_search: bool = False, largest_component: bool = False,
                    run_dir: Path | None = None) -> Predictor:
        """The predictor of a method in memory (validation during training, a loaded run), in the run's
        geometry and, unless `amp` says otherwise, its precision."""
        device = torch.device(device)
        return cls(method.predict, cfg.input_size, float(cfg.spacing_mm), device,
                   autocast_dtype(device, cfg.amp if amp is None else amp), flip_tta, scale_search,
                   largest_component, cfg=cfg, run_dir=run_dir, in_channels=cfg.in_channels)

    @classmethod
    def from_run(cls, run: str | Path, checkpoint: str = "last", device: torch.device | str | None = None, *,
                 amp: bool | None = None, flip_tta: bool = False, scale_search: bool = False,
                 largest_component: bool | None = None) -> Predictor:
        """The predictor of a fine-tuning run folder (or a `train` folder) and one of its checkpoints.
        `device` None: CUDA where there is one; `largest_component` None: the post-processing the run's
        validation chose; `amp` None: the precision the run trained in."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg, method, run_dir = load_run(run, checkpoint, device)
        if largest_component is None:
            largest_component = run_largest_component(run_dir)
        return cls.from_method(method, cfg, device, amp=amp, flip_tta=flip_tta, scale_search=scale_search,
                               largest_component=largest_component, run_dir=run_dir)

    @classmethod
    def from_runs(cls, runs: Sequence[str | Path], checkpoint: str = "last", device: torch.device | str | None = None,
                  **choices: Any) -> Predictor:
        """One predictor averaging the probabilities of several runs (the folds or seeds of one experiment,
        nnU-Net's ensemble): the first run's geometry, precision and post-processing choice, and every
        other run checked to share what the average needs (classes, spacing, patch, channels,
        normalisation), so that a mismatch is one line, not a silently wrong mask."""
        first = cls.from_run(runs[0], checkpoint, device, **choices)
        if len(runs) == 1:
            return first
        networks, seen = [first.network], {first.run_dir.resolve(): runs[0]}
        for run in runs[1:]:
            other = cls.from_run(run, checkpoint, first.device, **choices)
            where = other.run_dir.resolve()
            if where in seen:
                raise IdealsegError(f"{run}: the same run as {seen[where]}, named twice; an ensemble averages "
                                    "different runs, each once")
            seen[where] = run
            for key in ENSEMBLE_KEYS:
                if getattr(other.cfg, key) != getattr(first.cfg, key):
                    raise IdealsegError(f"{other.run_dir}: its {key} {getattr(other.cfg, key)!r} is not "
                                        f"{first.run_dir}'s {getattr(first.cfg, key)!r}; an ensemble averages runs "
                                        "of one experiment")
            networks.append(other.network)

        def average(x: torch.Tensor) -> torch.Tensor:
            return sum(net(x).float() for net in networks) / len(networks)

        return replace(first, network=average)

    def with_choices(self, **choices: Any) -> Predictor:
        """A copy with other choices (flip_tta, scale_search, largest_component, ...), the network shared."""
        return replace(self, **choices)

    def predict(self, volume: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
        """The uint8 [Z, H, W] mask of a [Z, H, W] volume ([C, Z, H, W] for a run of C > 1 channels)
        normalised as the run's training data was.
        `spacing` in mm, (Z, H, W) or in-plane (H, W); needed in physical space."""
        return self.segment(volume, spacing).mask

    @torch.inference_mode()
    def segment(self, volume: np.ndarray, spacing: Sequence[float] | None = None) -> Prediction:
        """`predict`'s mask with the scale it was segmented at (the scale search's choice, else 1).

        Raises:
            IdealsegError: the volume is not [Z, H, W] or not normalised.
            ValueError: physical space without a spacing, or a spacing that makes slices absurdly large.
        """
        spacing = self._checked(volume, spacing)
        box = content_box(volume)
        if self.target_spacing and box != whole_box(volume):
            # padding is not content: the scan inside its box is segmented as the unpadded scan would be
            inner = self._segment(volume[(..., *box)], spacing)
            mask = np.zeros(volume.shape[-3:], dtype=np.uint8)
            mask[box] = inner.mask
            return replace(inner, mask=mask)
        return self._segment(volume, spacing)

    def _segment(self, volume: np.ndarray, spacing: tuple[float, float] | None) -> Prediction:
        """`segment` of a checked volume: the scale search, the network over every slice, the argmax."""
        scale, evidence = 1.0, None
        if self.scale_search and self.target_spacing:
            evidence = self.scale_evidence(volume, spacing)
            scale = evidence.decide()
            spacing = (spacing[0] * scale, spacing[1] * scale)
        chunks, classes, tally = [], 0, ConfidenceTally()
        for probs in self._native(volume, spacing):
            chunks.append(self._argmax(probs))
            tally.add(probs, passes=3 if self.flip_tta else 1)
            classes = int(probs.shape[1])
        mask = torch.cat(chunks).numpy()
        return Prediction(largest_components(mask, classes) if self.largest_component else mask, scale,
                          round(tally.value(), 4), evidence)

    @torch.inference_mode()
    def probabilities(self, volume: np.ndarray, spacing: Sequence[float] | None = None) -> torch.Tensor:
        """Class probabilities float32 [Z, C, H, W] on the volume's grid (averaged over the flips with
        flip_tta), on the device, for callers that need more than the mask; no scale search."""
        spacing = self._checked(volume, spacing)
        passes = 3 if self.flip_tta else 1
        return torch.cat(list(self._native(volume, spacing))) / passes

    def choose_scale(self, volume: np.ndarray, spacing: Sequence[float]) -> float:
        """The multiple of the in-plane `spacing` a scan is segmented at: the header's (1) unless the model
        is clearly more confident at another (`scale_evidence`, `ScaleEvidence.decide`). The volume
        inside its foreground box, as `segment` sees it."""
        box = content_box(volume)
        return self.scale_evidence(volume[(..., *box)], spacing).decide()

    @torch.inference_mode()
    def scale_evidence(self, volume: np.ndarray, spacing: Sequence[float]) -> ScaleEvidence:
        """How confident the model is about what it calls foreground (the mean top-class probability over
        pixels not predicted as background) at each multiple of the in-plane `spacing` in SCALE_FACTORS,
        on up to SCALE_SLICES slices of the volume's middle, over them all and slice by slice. Without
        flips: the search compares scales, not the final mask."""
        spacing = in_plane(spacing)
        slices = self._slices(volume)
        z = slices.shape[0]
        lo, hi = int(z * 0.2), max(int(z * 0.2) + 1, int(np.ceil(z * 0.8)))
        picks = np.unique(np.linspace(lo, hi - 1, min(SCALE_SLICES, hi - lo)).round().astype(int))
        chunk = slices[picks].to(self.device)
        confidence, per_slice = {}, {}
        for factor in SCALE_FACTORS:
            scaled = (spacing[0] * factor, spacing[1] * factor)
            if oversize(volume.shape[-2:], scaled, self.target_spacing):
                continue
            grid = resampled_size(volume.shape[-2:], scaled, self.target_spacing)
            top, label = self._model_grid(chunk, grid, self._batch(grid, len(picks)), False).max(1)
            foreground = label > 0
            confidence[factor] = float(top[foreground].mean()) if foreground.any() else 0.0
            counts = foreground.sum((1, 2))
            sums = (top * foreground).sum((1, 2))
            per_slice[factor] = torch.where(counts > 0, sums / counts.clamp(min=1), 0.0).cpu().numpy()
        return ScaleEvidence(confidence, per_slice)

    # -- the network over a volume ---------------------------------------------------------------
    def _checked(self, volume: np.ndarray, spacing: Sequence[float] | None) -> tuple[float, float] | None:
        """The in-plane spacing as inference needs it, or the error that says what is wrong."""
        c = self.in_channels
        if volume.ndim != (3 if c == 1 else 4) or (volume.ndim == 4 and volume.shape[0] != c):
            want = "[Z, H, W]" if c == 1 else f"[{c}, Z, H, W] ({c} channels)"
            raise IdealsegError(f"expected a {want} volume, got shape {tuple(volume.shape)}")
        check_volume(volume)
        if self.target_spacing and (spacing is None or len(spacing) == 0):
            raise ValueError(f"this model works at {self.target_spacing:g} mm: the volume's in-plane spacing is "
                             "needed")
        if spacing is None or len(spacing) == 0:
            return None
        pair = in_plane(spacing)
        reason = oversize(volume.shape[-2:], pair, self.target_spacing) if self.target_spacing else None
        if reason:
            raise ValueError(f"the model's spacing: {reason}: is the volume's spacing right?")
        return pair

    def _grid(self, shape: tuple[int, int], spacing: tuple[float, float] | None) -> tuple[int, int]:
        """The slice size the network sees: the slice at the run's spacing, or the input size."""
        if self.target_spacing:
            return resampled_size(shape, spacing, self.target_spacing)
        return (self.input_size, self.input_size)

    @staticmethod
    def _batch(grid: tuple[int, int], wanted: int) -> int:
        """Slices per chunk (and windows per network call): at most `wanted`, probabilities near 1 GB."""
        return max(1, min(wanted, PROBABILITY_ELEMENTS // (grid[0] * grid[1])))

    def _native(self, volume: np.ndarray, spacing: tuple[float, float] | None) -> Iterator[torch.Tensor]:
        """[B, C, H, W] probabilities of each chunk of slices, back on the volume's own grid."""
        vol = self._slices(volume)
        z, _, h, w = vol.shape
        grid = self._grid((h, w), spacing)
        batch = self._batch(grid, self.batch_size)
        for start in range(0, z, batch):
            probs = self._model_grid(vol[start : start + batch].to(self.device), grid, batch, self.flip_tta)
            yield resample(probs, (h, w), "bilinear")

    @staticmethod
    def _slices(volume: np.ndarray) -> torch.Tensor:
        """[Z, C, H, W] float32 slices of a [Z, H, W] or [C, Z, H, W] volume (on the host)."""
        return torch.from_numpy(np.ascontiguousarray(as_channels(volume), dtype=np.float32)).transpose(0, 1)

    @staticmethod
    def _argmax(probs: torch.Tensor) -> torch.Tensor:
        # argmax over classes is about 7x faster with the classes innermost (channels_last) on a CPU,
        # and was a third of inference time with them outermost
        return probs.contiguous(memory_format=torch.channels_last).argmax(1).to(torch.uint8).cpu()

    def _model_grid(self, chunk: torch.Tensor, grid: tuple[int, int], batch: int, flip_tta: bool) -> torch.Tensor:
        """[B, C, *grid] class probabilities (summed over flips with `flip_tta`) of slices [B, C, H, W]:
        the one place the network runs over slices, in the run's geometry and precision."""

        def net(x: torch.Tensor) -> torch.Tensor:
            x = x.contiguous(memory_format=torch.channels_last)  # faster convolutions on the CPU too
            probs = self.network(x)
            if flip_tta:
                probs = probs + self.network(x.flip(-1)).flip(-1) + self.network(x.flip(-2)).flip(-2)
            return probs.float()

        with torch.autocast(self.device.type, dtype=self.precision, enabled=self.precision is not None):
            slices = resample(chunk, grid, "bilinear")
            if self.target_spacing:
                probs = sliding_window_inference(slices, (self.input_size, self.input_size), batch, net,
                                                 overlap=OVERLAP, mode="gaussian")
            else:
                probs = net(slices)
        return probs.float()


def content_box(volume: np.ndarray) -> Box:
    """The [Z, H, W] box of a normalised volume's content: the union of its channels' foreground boxes
    (transforms/normalize.py), the voxels that differ from the constant it is padded with."""
    boxes = [foreground_box(channel) for channel in as_channels(volume)]
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))



def whole_box(volume: np.ndarray) -> Box:
    """The [Z, H, W] box of the whole volume."""
    return tuple(slice(0, n) for n in volume.shape[-3:])
