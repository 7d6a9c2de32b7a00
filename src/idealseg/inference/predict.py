"""`predict`: NIfTI scans in, NIfTI masks out with the input's affine, header, shape and orientation.

A run of several channels reads each scan as its channel files, `CASE_0000`, `CASE_0001`, ...
(data/channels.py), and writes `CASE_seg.nii.gz` with the geometry of channel 0."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from idealseg import checks
from idealseg.atomic import atomic_file, atomic_path
from idealseg.data.channels import case_of_file, check_same_grid, scan_cases, stack_channels
from idealseg.data.nifti_io import NiftiScan, from_zhw, is_nifti, nifti_stem, read_scan
from idealseg.errors import IdealsegError, InputError
from idealseg.inference.predictor import Predictor
from idealseg.inference.spacing import spacing_mismatch
from idealseg.ownership import check_not_link, describe, read_manifest
from idealseg.transforms.resample import oversize
from idealseg.transforms.spacing import in_plane
from idealseg.writer_lock import writer_lock

QUALITY_FILE = "idealseg_quality.csv"  # per-scan quality scores, written beside the masks
QUALITY_COLUMNS = ("scan", "mask", "quality", "scale")
QUALITY_SHOWN = 3  # the lowest scores said on screen
MASK_SUFFIXES = ("_seg", "_gt")  # masks by name (ours and the common manual conventions)
HELD_BYTES = 2 * 1024**3  # scans read by the check before any write are kept for the predictions up to this


def looks_like_mask(path: Path) -> bool:
    """A file named as a mask (`p1_seg.nii.gz`, `p1_gt.nii`, anything under labelsTr): not a scan to segment."""
    return nifti_stem(path).endswith(MASK_SUFFIXES) or "labelsTr" in path.parts


def _not_a_file(path: Path) -> str:
    """What a NIfTI-named entry that is not a regular file is (lstat/stat only: a FIFO is never opened,
    as opening one blocks until something writes to it)."""
    if path.is_symlink() and not path.exists():
        return "broken link"
    if path.is_fifo():
        return "FIFO"
    return "folder" if path.is_dir() else "not a regular file"


def _inputs(src: Path) -> list[Path]:
    """The scans to segment: `src` itself, or the NIfTI files of the folder `src`; entries named as masks
    and entries named .nii/.nii.gz that are no regular file (a broken link, a FIFO) are skipped, each
    kind said in one line."""
    if src.is_dir():
        named = sorted(p for p in src.iterdir() if is_nifti(p))
        files = [p for p in named if p.is_file()]
        odd = [f"{p.name} ({_not_a_file(p)})" for p in named if p not in files]
        if odd:
            warnings.warn(f"{src}: skipping {len(odd)} entr{'y' if len(odd) == 1 else 'ies'} named as NIfTI that "
                          f"{'is' if len(odd) == 1 else 'are'} no regular file: {describe(odd)}", stacklevel=3)
        masks = [p for p in files if looks_like_mask(p)]
        if masks:
            warnings.warn(f"{src}: skipping {len(masks)} file(s) named as masks ({describe([p.name for p in masks])})",
                          stacklevel=3)
        files = [p for p in files if p not in masks]
        if not files:
            raise InputError(src, "folder holds no .nii or .nii.gz scans")
        return files
    if not src.exists():
        raise InputError(src, "file not found")
    if looks_like_mask(src):
        warnings.warn(f"{src}: named as a mask, segmenting it as a scan because it was given by name", stacklevel=3)
    return [src]


def _output_name(path: Path) -> str:
    """`p1_seg.nii.gz` of `p1.nii.gz` or `p1_0000.nii.gz`: a mask is named by its scan's case."""
    return f"{case_of_file(path)}_seg.nii.gz"


def plan_outputs(files: list[Path], out: Path, overwrite: bool = False) -> list[Path]:
    """Where each mask goes, checked before anything is written: never onto an input, never two masks
    onto one name, never onto an existing file unless `overwrite`."""
    single = len(files) == 1 and is_nifti(out)
    if not single and out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder (give a folder for the masks)")
    check_mask_folder(out.parent if single else out)
    targets = [out] if single else [out / _output_name(p) for p in files]
    inputs = {p.resolve(): p for p in files}
    folders = {p.parent for p in inputs}
    seen: dict[Path, Path] = {}
    for path, target in zip(files, targets, strict=True):
        key = target.resolve()
        if key in inputs:
            raise InputError(target, f"is an input scan; predict never writes over its input ({path})")
        if key in seen:
            raise InputError(target, f"two inputs would write this mask ({seen[key].name} and {path.name}); "
                                     "rename one of them")
        seen[key] = path
        if target.exists() and key.parent in folders:
            raise InputError(target, "exists in the input folder; predict never replaces a file there "
                                     "(it may be a manual mask): write the masks to another folder")
        check_target(target, overwrite)
    return targets


def check_target(target: Path, overwrite: bool) -> None:
    """A mask file may be written at `target`: not through a link, and over an existing file only with
    `overwrite` and only where it is a mask predict wrote."""
    if target.is_symlink():
        raise InputError(target, "is a symbolic link; predict never writes through one")
    if target.exists() and not overwrite:
        raise InputError(target, "exists (pass --overwrite to replace existing masks)")
    if target.exists() and not _is_nifti(target):
        raise InputError(target, "exists and is not a NIfTI mask; --overwrite replaces only masks")
    if target.exists() and not _ours(target):
        raise InputError(target, "exists and is not a mask idealseg wrote (a manual or another tool's mask?); "
                                 "--overwrite replaces only idealseg's: move it out or write elsewhere")


def check_mask_folder(folder: Path) -> None:
    """Masks go to a folder of their own: never through a link, never into a folder idealseg made for
    something else (a run or a dataset: its next --resume or --overwrite would find foreign files)."""
    check_not_link(folder)
    resolved = folder.resolve()
    for d in [resolved, *resolved.parents]:
        manifest = read_manifest(d)
        if manifest is not None:
            where = "is" if d == resolved else f"lies inside {d}, which is"
            raise InputError(folder, f"{where} an idealseg {manifest['kind']} folder; write the masks to a "
                                     "folder of their own")


MASK_MARK = b"idealseg predict"  # the header's descrip of every mask predict writes: --overwrite's proof


def _ours(path: Path) -> bool:
    """Whether a NIfTI file is a mask `predict` wrote (its header's description says so)."""
    try:
        return bytes(nib.load(str(path)).header["descrip"]).startswith(MASK_MARK)
    except Exception:  # any read failure: not provably ours
        return False


def _is_nifti(path: Path) -> bool:
    try:
        nib.load(str(path))
    except Exception:  # nibabel raises many types for what is not NIfTI
        return False
    return True


def run_normalization(cfg) -> str:
    """The intensity normalisation the run was trained with, from the run folder itself; a run folder
    written before config.yaml recorded it (benchmarks/results holds some) asks its dataset."""
    if cfg.normalization:
        return cfg.normalization
    from idealseg.data.dataset import Dataset

    try:
        return Dataset(cfg.dataset).info.get("normalization", "percentile")
    except IdealsegError:
        warnings.warn(f"the run records no normalisation and its dataset ({cfg.dataset or 'none named'}) is not "
                      "readable: using percentile normalisation", stacklevel=2)
        return "percentile"


def predict_files(
    run: str | Path, src: str | Path, out: str | Path, checkpoint: str = "last", flip_tta: bool = False,
    device: str | None = None, normalization: str | None = None, overwrite: bool = False,
    largest_component: bool | None = None, scale_search: bool = True, ensemble: list[str | Path] | None = None,
) -> list[Path]:
    """Segment one NIfTI file or a folder of them; masks go to OUT (a folder, or a file name).
    `largest_component` None: the post-processing the run's validation chose. `scale_search` (a run in
    physical space): each scan is segmented at its header's spacing unless the model is clearly more
    confident at another multiple of it (Predictor.choose_scale), and a scan not segmented at its
    header's is named, with that evidence."""
    runs = [run, *(ensemble or [])]  # several runs (folds, seeds): their probabilities averaged
    predictor = Predictor.from_runs(runs, checkpoint, device, flip_tta=flip_tta, scale_search=scale_search,
                                    largest_component=largest_component)
    cfg = predictor.cfg
    src, out = Path(src), checks.output_path(out, "OUT")
    cases = scan_cases(_inputs(src), cfg.in_channels, src)
    folder = out.parent if len(cases) == 1 and is_nifti(out) else out
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "exists and is not a folder (give a folder for the masks)")
    check_mask_folder(folder)  # before the lock: never a lock file in a run's or a dataset's folder
    with writer_lock(folder):  # one predict at a time: what plan_outputs finds stays true until written
        return _predict_locked(predictor, run, cases, out, overwrite, normalization)


def _predict_locked(predictor: Predictor, run: str | Path, cases: list[tuple[Path, ...]], out: Path,
                    overwrite: bool, normalization: str | None) -> list[Path]:
    """predict_files' checks and writes, under OUT's lock."""
    cfg = predictor.cfg
    targets = plan_outputs([paths[0] for paths in cases], out, overwrite)
    normalization = normalization or run_normalization(cfg)
    if not cfg.spacing_mm:
        warnings.warn(f"{run}: this model knows no physical size (trained on slices resized to {cfg.input_size} px "
                      "whatever their spacing); it is only right on scans framed like its training set", stacklevel=2)
    table = quality_table_path(out, targets, overwrite)
    scans = checked_scans(cases, cfg.spacing_mm)
    written, rows = [], []
    for paths, target in tqdm(list(zip(cases, targets, strict=True)), desc="predict", unit="vol"):
        channels = [scans.pop(p, None) or read_quietly(p) for p in paths]
        path, scan = paths[0], channels[0]
        result = predictor.segment(stack_channels(channels, normalization), in_plane(scan.spacing))
        if result.scale != 1.0:
            tqdm.write(f"{path}: segmented at {result.scale:g}x its header's in-plane spacing (its anatomy looks "
                       f"{1 / result.scale:.2g}x larger than the training scans': "
                       f"{result.evidence.says(result.scale)}; --no-scale-search keeps the header's)")
        write_mask(result.mask, scan, target)
        written.append(target)
        rows.append({"scan": str(path), "mask": target.name, "quality": result.quality, "scale": result.scale})
    write_quality_table(rows, table)
    return written


def quality_table_path(out: Path, targets: list[Path], overwrite: bool) -> Path | None:
    """Where the quality table goes: beside the masks in OUT's folder (none for a single named mask),
    checked before any mask is written; an existing file is replaced only with --overwrite and only
    when it is a table idealseg wrote (its header line is ours)."""
    if len(targets) == 1 and targets[0] == out:
        return None
    table = out / QUALITY_FILE
    if table.is_symlink():
        raise InputError(table, "is a symbolic link; predict never writes through one")
    if table.exists():
        try:
            ours = table.read_text(errors="replace").split("\n", 1)[0] == ",".join(QUALITY_COLUMNS)
        except OSError:
            ours = False
        if not (overwrite and ours):
            raise InputError(table, "exists (pass --overwrite to replace the quality table of an earlier predict)"
                             if ours else "exists and is not a quality table idealseg wrote; move it out")
    return table


def write_quality_table(rows: list[dict], table: Path | None) -> None:
    """The per-scan quality table, lowest (check first) on top, and its worst lines said on screen."""
    rows = sorted(rows, key=lambda r: r["quality"])
    if table is not None:
        with atomic_file(table) as f:
            writer = csv.DictWriter(f, fieldnames=list(QUALITY_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    shown = "; ".join(f"{Path(r['scan']).name} {r['quality']:.3f}" for r in rows[:QUALITY_SHOWN])
    where = f" (all in {table})" if table is not None else ""
    tqdm.write(f"quality, lowest first: check these masks first: {shown}{where}")


def checked_scans(cases: list[tuple[Path, ...]], target: float) -> dict[Path, NiftiScan]:
    """Read and check every scan (each channel file, the channels of a case on one grid) before any mask
    is written (a bad file is an error, not a half-done folder); the scans read are kept for the
    predictions while they fit in HELD_BYTES, so that a folder of the usual size is read once, and a
    larger one is read again only for the scans beyond it."""
    held, size = {}, 0
    for paths in tqdm(cases, desc="check scans", unit="vol", leave=False):
        channels = [read_scan(path) for path in paths]
        check_same_grid(channels, paths)
        check_scan_spacing(channels[0], paths[0], target)
        for path, scan in zip(paths, channels, strict=True):
            size += scan.data.nbytes
            if size <= HELD_BYTES:
                held[path] = scan
    return held


def read_quietly(path: Path) -> NiftiScan:
    """A scan read a second time (it did not fit in HELD_BYTES): its warnings were given by the check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_scan(path)


def check_scan_spacing(scan: NiftiScan, path: Path, target: float) -> None:
    """Before any mask is written: a scan whose slices would be absurdly large at the model's spacing is an
    error, and one whose in-plane spacing is far from it gets a warning with the numbers."""
    if not target:
        return
    reason = oversize(scan.zhw.shape[1:], in_plane(scan.spacing), target)
    if reason:
        raise InputError(path, f"the model's spacing: {reason}: check the header's spacing")
    suspect = spacing_mismatch(in_plane(scan.spacing), target)
    if suspect:
        warnings.warn(f"{path}: {suspect}", stacklevel=3)


def mask_in_source(mask: np.ndarray, scan: NiftiScan) -> np.ndarray:
    """A [Z, H, W] mask in the scan's own axis order and shape (2D, 3D, or 4D of one frame)."""
    mask = from_zhw(mask, scan.axes, ndim=3 if scan.data.ndim != 2 else 2)
    return mask[..., None] if scan.data.ndim == 4 else mask


def write_mask(mask: np.ndarray, scan: NiftiScan, target: Path) -> None:
    """Write a [Z, H, W] mask in the scan's own axis order, affine and header; a failed write (a full disk,
    a read-only folder) is one line naming the mask, and leaves no partial file."""
    mask = mask_in_source(mask, scan)
    header = scan.img.header.copy()
    header.set_data_dtype(np.uint8)
    header["descrip"] = MASK_MARK
    with atomic_path(target) as tmp:
        try:
            nib.save(nib.Nifti1Image(mask.astype(np.uint8), scan.affine, header), str(tmp))
        except OSError as exc:
            raise InputError(target, f"could not write the mask ({exc.strerror or exc})") from None
