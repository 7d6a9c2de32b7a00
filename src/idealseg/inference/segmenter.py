"""A trained run loaded once, segmenting volumes in memory, NIfTI images or files: what `predict` does
per file, for scripts and notebooks (`idealseg.load(run).segment(...)`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from idealseg import checks
from idealseg.checks import InvalidValue
from idealseg.config import RunConfig
from idealseg.data.channels import check_same_grid, scan_cases, stack_channels
from idealseg.data.nifti_io import NiftiScan, is_nifti, read_scan, scan_of_image
from idealseg.errors import InputError
from idealseg.inference.predict import (
    check_mask_folder,
    check_scan_spacing,
    check_target,
    mask_in_source,
    plan_outputs,
    write_mask,
)
from idealseg.inference.predictor import Predictor
from idealseg.inference.spacing import spacing_mismatch
from idealseg.transforms.normalize import normalize_channels
from idealseg.transforms.spacing import in_plane


@dataclass
class Segmenter:
    """A trained run, loaded once, that segments volumes in memory (what `predict` does per file).

    Made by `load`. It holds the run's `Predictor` (network, geometry, precision and post-processing)
    and the intensity normalisation the run's training data had, which a raw volume needs first.

    Attributes:
        predictor: The run's predictor, with the post-processing its validation chose.
        normalization: The run's intensity normalisation ("percentile" or "minmax").
    """

    predictor: Predictor
    normalization: str

    def segment(self, volume: np.ndarray | nib.Nifti1Image | str | Path, flip_tta: bool = False, *,
                spacing: tuple[float, ...] | None = None, largest_component: bool | None = None,
                scale_search: bool = True, with_quality: bool = False, out: str | Path | None = None,
                overwrite: bool = False) -> np.ndarray | tuple[np.ndarray, float]:
        """Segment a volume of raw intensities, normalised first as the run's training data was.

        Args:
            volume: [Z, H, W] raw intensities, slices along the first axis; [C, Z, H, W] for a run trained
                on scans of C > 1 channels (each channel is normalised on its own). Or what a user holds:
                a nibabel image or the path of a .nii/.nii.gz file (for a run of C > 1 channels, its
                channel 0 file, the others beside it), read exactly as `predict` reads it: its header's
                spacing and slice axis, its checks; the mask then comes back in its geometry.
            flip_tta: Average the network over horizontal and vertical flips (three passes).
            spacing: In mm, (Z, H, W) or in-plane (H, W). A model in physical space (`spacing_mm` > 0)
                needs it to see the anatomy at its training scale; a spacing far from the model's is
                warned about, as the header of a scan may be in the wrong unit.
            largest_component: Keep each class's largest connected region (removes stray false
                positives); None: as the run's validation chose.
            scale_search: As `predict`, segment at the multiple of `spacing` the model is most
                confident at, for scans whose anatomy is not at the size the spacing implies.
            with_quality: Also return the mask's quality score, as `predict` writes it: the mean
                confidence over what the mask calls foreground, 0 to 1; the lower, the likelier a
                poor mask (rank scans by it to know which to check first).
            out: For an image or path: also write the mask there (a .nii.gz path), as `predict` writes
                it (the input's affine and header), never over an existing file unless `overwrite`,
                and then only over a mask idealseg wrote.
            overwrite: Replace an existing mask at `out`.

        Returns:
            Labels, uint8 [Z, H, W] for an array; for an image or path, in the input's own axis order
            and shape. The value is the index in `classes`. With `with_quality`, the pair (labels,
            quality score).

        Raises:
            InvalidValue: A volume that is not a finite [Z, H, W] array, an invalid spacing or flag,
                or no spacing for a model in physical space (also a `ValueError`).
            IdealsegError: A spacing at which the slices would be absurdly large; an image or file
                predict would refuse (one line naming it), or an `out` it would not write.
        """
        if isinstance(volume, (str, Path, nib.Nifti1Image)):
            return self._segment_scan(volume, flip_tta, spacing=spacing, largest_component=largest_component,
                                      scale_search=scale_search, with_quality=with_quality, out=out,
                                      overwrite=overwrite)
        if out is not None:
            raise InvalidValue("out: a mask is written only for an image or path, whose header it takes; for an "
                               "array, save the mask with the header you have")
        volume = _volume(volume, self.cfg.in_channels)
        if spacing is not None:
            spacing = _in_plane(spacing)
            suspect = spacing_mismatch(spacing, self.spacing_mm)
            if suspect:
                warnings.warn(f"volume: {suspect}", stacklevel=2)
        elif self.spacing_mm:
            raise InvalidValue(f"this model works at {self.spacing_mm:g} mm: pass the volume's spacing "
                               "(segment(volume, spacing=(z, y, x)))")
        image = normalize_channels(volume, self.normalization)
        result = self._choices(flip_tta, scale_search, largest_component).segment(image, spacing)
        return (result.mask, result.quality) if checks.flag(with_quality, "with_quality") else result.mask

    def _segment_scan(self, source: nib.Nifti1Image | str | Path, flip_tta: bool, *, spacing: Any,
                      largest_component: bool | None, scale_search: bool, with_quality: bool,
                      out: str | Path | None, overwrite: bool) -> np.ndarray | tuple[np.ndarray, float]:
        """`segment` of a nibabel image or a NIfTI path: read, checked, normalised and written as `predict`
        does (inference/predict.py), the mask returned in the input's geometry."""
        if spacing is not None:
            raise InvalidValue("spacing: an image or path has its spacing in its header; pass spacing only "
                               "with an array")
        overwrite = checks.flag(overwrite, "overwrite")
        scans = _read_scans(source, self.cfg.in_channels)
        scan, name = scans[0]
        check_scan_spacing(scan, name, self.spacing_mm)
        target = None
        if out is not None:
            target = checks.output_path(out, "out")
            if not is_nifti(target):
                raise InvalidValue(f"out {target}: give the mask's file name, ending .nii.gz")
            if isinstance(source, (str, Path)):
                plan_outputs([name], target, overwrite)  # predict's rules for one named mask
            else:
                check_mask_folder(target.parent)
                check_target(target, overwrite)
        image = stack_channels([s for s, _ in scans], self.normalization)
        result = self._choices(flip_tta, scale_search, largest_component).segment(image, in_plane(scan.spacing))
        if target is not None:
            write_mask(result.mask, scan, target)
        mask = mask_in_source(result.mask, scan)
        return (mask, result.quality) if checks.flag(with_quality, "with_quality") else mask

    def _choices(self, flip_tta: Any, scale_search: Any, largest_component: Any) -> Predictor:
        """The run's predictor with one call's choices, checked (largest_component None: the run's own)."""
        keep = checks.optional_flag(largest_component, "largest_component")
        return self.predictor.with_choices(
            flip_tta=checks.flag(flip_tta, "flip_tta"), scale_search=checks.flag(scale_search, "scale_search"),
            largest_component=self.predictor.largest_component if keep is None else keep)

    @property
    def cfg(self) -> RunConfig:
        """The run's configuration, as it was trained."""
        return self.predictor.cfg

    @property
    def spacing_mm(self) -> float:
        """The in-plane spacing the model works at, in mm; 0 where it knows no physical size."""
        return float(self.predictor.target_spacing)

    @property
    def classes(self) -> list[str]:
        """Class names, background first, as the run was trained on (index = label value in a mask)."""
        return list(self.cfg.classes)


def _read_scans(source: nib.Nifti1Image | str | Path, channels: int) -> list[tuple[NiftiScan, Path]]:
    """The scan(s) of an image or path, each with the name its messages give, read as `predict` reads
    them: a path's channel files (CASE_0000 and its siblings, for a run of several channels), checked
    on one grid."""
    if isinstance(source, nib.Nifti1Image):
        if channels > 1:
            raise InvalidValue(f"this run reads {channels} channels: give the path of the scan's channel 0 file "
                               "(its other channels beside it), or a [C, Z, H, W] array")
        name = Path(source.get_filename() or "the image given")
        return [(scan_of_image(source, name), name)]
    path = checks.path(source, "volume")
    if path.is_dir():
        raise InputError(path, "is a folder; segment takes one scan (predict_files takes a folder)")
    paths = scan_cases([path], channels, path)[0]
    scans = [read_scan(p) for p in paths]
    check_same_grid(scans, paths)
    return list(zip(scans, paths, strict=True))


def _volume(volume: Any, channels: int = 1) -> np.ndarray:
    """A [Z, H, W] array of finite intensities ([channels, Z, H, W] where channels > 1), or the error that
    says what it is instead."""
    try:
        array = np.asarray(volume, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidValue(f"volume: expected a [Z, H, W] array of numbers, got {type(volume).__name__}") from None
    shaped = array.ndim == 3 if channels == 1 else (array.ndim == 4 and array.shape[0] == channels)
    if not shaped or min(array.shape) == 0:
        form = "[Z, H, W]" if channels == 1 else f"[{channels}, Z, H, W] ({channels} channels)"
        raise InvalidValue(f"expected a {form} volume, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidValue("volume contains NaN or Inf values")
    return array


def _in_plane(spacing: Any) -> tuple[float, float]:
    """The in-plane (H, W) spacing of a (Z, H, W) or (H, W) spacing in mm."""
    try:
        values = np.atleast_1d(np.asarray(spacing, dtype=float)).tolist()
    except (TypeError, ValueError):
        values = []
    if len(values) not in (2, 3) or not all(np.isfinite(v) and v > 0 for v in values[-2:]):
        raise InvalidValue(f"spacing must be (Z, H, W) or (H, W) in mm, the in-plane values > 0; got {spacing}")
    return in_plane(values)
