"""Scans with several channels (multi-parametric MRI: T2, ADC, ...), read as nnU-Net reads them.

nnU-Net stores a case's channels as one NIfTI file each, `CASE_0000.nii.gz`, `CASE_0001.nii.gz`, ...,
all on one grid. Import (data/importers/nifti.py) and predict (inference/predict.py) both group files
into cases here and stack them here, so a model is served its channels in the order it learnt them.

The channel rule of the whole package: an image is [Z, H, W] where it has one channel (every dataset
prepared before channels were read, and the API's `segment(volume)`), [C, Z, H, W] where it has
C > 1. A dataset records its count as `channels` in dataset.json (absent: 1), a run as `in_channels`
in config.yaml. Each channel is normalised on its own (transforms/normalize.py), since a T2 and an ADC map
share no intensity scale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from idealseg.data.nifti_io import NiftiScan, is_nifti, nifti_stem
from idealseg.errors import InputError
from idealseg.transforms.normalize import normalize_volume

CHANNEL_FILE = re.compile(r"^(.+)_(\d{4})$")  # nnU-Net: CASE_XXXX.nii.gz, one file per channel
FIRST_CHANNEL = "_0000"  # nnU-Net's suffix of a case's channel 0 (of its only one, for a one-channel case)
GRID_TOLERANCE = 1e-3  # mm: the channels of a case must lie on the same grid this closely


def as_channels(image: np.ndarray) -> np.ndarray:
    """[C, Z, H, W] view of an image under the channel rule (a [Z, H, W] one gets a channel axis)."""
    return image[None] if image.ndim == 3 else image


def from_channels(image: np.ndarray) -> np.ndarray:
    """The channel rule's form of [C, Z, H, W]: [Z, H, W] where C is 1."""
    return image[0] if image.shape[0] == 1 else image


def split_channel(path: Path) -> tuple[str, int] | None:
    """(case, channel number) of a file named `CASE_XXXX.nii[.gz]`, else None."""
    match = CHANNEL_FILE.match(nifti_stem(path)) if is_nifti(path) else None
    return (match.group(1), int(match.group(2))) if match else None


def case_of_file(path: Path) -> str:
    """`p1` of `p1.nii.gz` or `p1_0000.nii.gz`: the case a scan or label file names, without its NIfTI
    ending and nnU-Net's channel-0 suffix (import's case ids, predict's mask names)."""
    return nifti_stem(path).removesuffix(FIRST_CHANNEL)


def reads_channel_suffixes(images: Sequence[Path], labels: Sequence[Path], declared: int | None) -> bool:
    """Whether a source's `_XXXX` name endings are channel numbers (nnU-Net's CASE_0000, CASE_0001) or just
    part of each scan's name (`img_0000` ... `img_0005`, six scans). A four-digit ending alone says
    nothing, so the channels must be declared or the labels must agree:
    - a dataset.json naming its channels: several, the endings are channels; one, only where every image
      ends in _0000 as nnU-Net names a one-channel case;
    - else a label named exactly as a numbered image (labelsTr/img_0003 or labelsTr/img_0000 beside
      imagesTr/img_0003, imagesTr/img_0000) says each file is a case of its own: nnU-Net names the label
      of case CASE `CASE`, never after one of its channel files;
    - else the endings are channels (labels named CASE, or no labels to say otherwise)."""
    if declared is not None:
        return declared > 1 or all((split_channel(p) or ("", 1))[1] == 0 for p in images)
    numbered = {nifti_stem(p) for p in images if split_channel(p)}
    return not numbered & {nifti_stem(p) for p in labels}


def group_channel_files(files: Sequence[Path], where: Path, suffixes: bool = True) -> dict[str, tuple[Path, ...]]:
    """Case id -> its channel files in channel order. With `suffixes` (see `reads_channel_suffixes`), a file
    named `CASE_XXXX` is channel XXXX of CASE and any other file a one-channel case of its own name;
    without, every file is a one-channel case named as the file. Every case must have channels 0 to C-1,
    the same C for all: one line naming the case otherwise."""
    cases: dict[str, dict[int, Path]] = {}
    for path in files:
        case, channel = (split_channel(path) if suffixes else None) or (nifti_stem(path), 0)
        other = cases.setdefault(case, {}).setdefault(channel, path)
        if other != path:
            raise InputError(where, f"two files for case {case!r} channel {channel:04d} ({other.name} and "
                                    f"{path.name}); keep one")
    grouped: dict[str, tuple[Path, ...]] = {}
    for case in sorted(cases):
        channels = cases[case]
        if sorted(channels) != list(range(len(channels))):
            missing = min(set(range(max(channels) + 1)) - set(channels))
            raise InputError(channels[min(channels)], f"case {case!r} has channel file(s) "
                                                      f"{_names(channels)} but no _{missing:04d}; channels are "
                                                      "numbered _0000, _0001, ... without gaps")
        grouped[case] = tuple(channels[c] for c in sorted(channels))
    counts = {len(paths) for paths in grouped.values()}
    if len(counts) > 1:
        fewest = min(grouped, key=lambda c: (len(grouped[c]), c))
        most = max(grouped, key=lambda c: (len(grouped[c]), c))
        raise InputError(grouped[fewest][0], f"case {fewest!r} has {len(grouped[fewest])} channel(s) but case "
                                             f"{most!r} has {len(grouped[most])}; every case needs the same "
                                             "channel files")
    return grouped


def _names(channels: dict[int, Path]) -> str:
    return ", ".join(f"_{c:04d}" for c in sorted(channels))


def check_same_grid(scans: Sequence[NiftiScan], paths: Sequence[Path]) -> None:
    """The channels of one case must share channel 0's shape and affine: they are stacked voxel by voxel
    and the mask is written with channel 0's geometry. One line naming the file that differs."""
    first = scans[0]
    for scan, path in zip(scans[1:], paths[1:], strict=True):
        if scan.shape != first.shape:
            raise InputError(path, f"channel shape {scan.shape} differs from {paths[0].name}'s {first.shape}; "
                                   "the channels of a case must lie on one grid")
        if not np.allclose(scan.affine, first.affine, atol=GRID_TOLERANCE):
            worst = float(np.abs(scan.affine - first.affine).max())
            raise InputError(path, f"channel geometry differs from {paths[0].name}'s (affines differ by up to "
                                   f"{worst:.3g} mm); resample the channels onto one grid")


def stack_channels(scans: Sequence[NiftiScan], normalization: str) -> np.ndarray:
    """The normalised image of a case's channel scans (one grid, checked): [Z, H, W] for one channel,
    [C, Z, H, W] for several, each channel normalised on its own."""
    return from_channels(np.stack([normalize_volume(s.zhw, normalization) for s in scans]))


def scan_cases(files: Sequence[Path], channels: int, given: Path) -> list[tuple[Path, ...]]:
    """The scans `predict` segments, each as its channel files in channel order. A run of one channel
    segments every file on its own (as it always has). A run of `channels` > 1 groups `CASE_XXXX` files
    into cases, `given` being the folder they came from, or one channel file given by name, whose
    siblings beside it are its other channels; a case without exactly the run's channels is refused."""
    if channels == 1:
        return [(path,) for path in files]
    if given.is_file():
        case = split_channel(given)
        if case is None:
            raise InputError(given, f"this run reads {channels} channels, one file each: name the scan's channel "
                                    "0 file (CASE_0000.nii.gz), its other channels beside it")
        files = sorted(p for p in given.parent.iterdir()
                       if p.is_file() and (split_channel(p) or ("",))[0] == case[0])
    for path in files:
        if split_channel(path) is None:
            raise InputError(path, f"this run reads {channels} channels, one file each named CASE_0000, CASE_0001, "
                                   "...: this file names no channel")
    cases: dict[str, dict[int, Path]] = {}
    for path in files:
        case, channel = split_channel(path)  # type: ignore[misc]
        other = cases.setdefault(case, {}).setdefault(channel, path)
        if other != path:
            raise InputError(path, f"case {case!r} has two files for channel _{channel:04d} ({other.name}); "
                                   "keep one")
    grouped = []
    for case in sorted(cases):
        found = cases[case]
        missing = [c for c in range(channels) if c not in found]
        extra = [c for c in found if c >= channels]
        if missing or extra:
            problem = (f"has no channel _{missing[0]:04d}" if missing else
                       f"has channel _{extra[0]:04d}, beyond the run's {channels}")
            raise InputError(found[min(found)], f"case {case!r} {problem}; this run reads {channels} channels "
                                                f"({', '.join(f'{case}_{c:04d}' for c in range(channels))})")
        grouped.append(tuple(found[c] for c in range(channels)))
    return grouped
