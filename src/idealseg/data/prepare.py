"""`prepare`: any supported source -> a dataset folder, built under a temporary name.

What can go wrong while writing is made one line, and nothing half-written is left: the disk's free
space is checked against the source's size (links followed) and again before each case, a failed
write names the output file, and Ctrl-C is held while HDF5 and nibabel run (an interrupt raised
inside their callbacks is printed and swallowed by Python, and the import then went on to "wrote"),
then acted on at the next case: the temporary folder is removed and the command exits 130.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from idealseg import checks
from idealseg.data.arguments import class_names, label_map_text, split_text
from idealseg.data.dataset import CaseVolume, Dataset, DatasetWriter
from idealseg.data.fingerprint import write_plan
from idealseg.data.importers.label_codes import parse_label_map
from idealseg.data.importers.nifti import import_unlabelled
from idealseg.data.importers.registry import ImportRequest, get_importer, importer_names
from idealseg.data.patients import compile_rule
from idealseg.errors import IdealsegError, InputError
from idealseg.ownership import atomic_dir, check_no_overlap, read_manifest
from idealseg.signals import deferred_interrupt
from idealseg.transforms.normalize import NORMALIZATIONS
from idealseg.transforms.spacing import median_in_plane

# (run, the dataset's normalisation, classes (None: unknown), median in-plane spacing in mm (None: unknown))
# -> (an image and its in-plane spacing -> a multiple of that spacing): given by the caller
# (idealseg.prepare passes evaluation's), as a dataset does not load models
ScaleChooser = Callable[[Path, str, list[str] | None, float | None],
                        Callable[[np.ndarray, tuple[float, float]], float]]
UNLABELLED_CLASSES = ["background", "foreground"]  # a dataset without labels: its classes are not known

PHANTOM_BYTES = 2_500_000  # one phantom patient's two volumes in the dataset folder, measured
MARGIN_BYTES = 16 * 2**20  # free space kept beyond an estimate: HDF5 must never meet a full disk


def _source_files(src: Path) -> Iterator[Path]:
    """Every file under `src`, through symbolic links to files and folders (each folder once: a link
    loop ends), as a source of links to the real data is common and its data is read all the same."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        yield from (Path(dirpath) / name for name in filenames)


def estimated_size(src: Path | None, patients: int) -> int:
    """Bytes the dataset folder will take, from its source: float32 images stored with LZF take
    about 4x a gzip-compressed NIfTI's bytes, 1.5x a gzip-compressed h5's (SSL4MIS: 104 MiB of
    source, 149 MiB of dataset) and about 1x an uncompressed source's. Links count as the files they
    point to (stat, not lstat); broken links count nothing."""
    if src is None:
        return patients * PHANTOM_BYTES
    total = 0
    for path in _source_files(src):
        try:
            size = path.stat().st_size
        except OSError:
            continue
        factor = 4 if path.name.endswith(".gz") else 1.5 if path.suffix == ".h5" else 1
        total += int(size * factor)
    return total


def check_free_space(out: Path, needed: int, what: str = "the dataset") -> None:
    """Refuse, before writing, what the disk cannot hold: a full disk in the middle of an h5 write
    can crash the HDF5 library itself, which no error handler catches."""
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(parent).free
    margin = 1.2 * needed + MARGIN_BYTES
    if free < margin:
        raise IdealsegError(f"{parent}: {free / 2**20:.0f} MiB free, {what} needs about {margin / 2**20:.0f} MiB; "
                            "free some space or choose another OUT")


class GuardedWriter(DatasetWriter):
    """A DatasetWriter for `prepare`: interrupts are taken between cases, free space is checked before
    each case, a failed write is one line naming the file in OUT, and a dataset without any label is
    recorded as one to pre-train on."""

    def __init__(self, tmp: Path, out: Path, interrupt: Callable[[], None], *args) -> None:
        super().__init__(tmp, *args)
        self.out, self.interrupt = out, interrupt
        self.unlabelled: Path | None = None  # --unlabeled: a folder of scans joined as unlabelled training cases
        self.scale_from: Path | None = None  # --unlabeled-scale-from: a run whose scale search rescales them
        self.scale_chooser: ScaleChooser | None = None  # builds that search from the run (evaluation's)
        self.patient_rule: re.Pattern | None = None

    def add(self, case: CaseVolume, split: str, source: str | Path) -> None:
        """Store one case, between two chances for Ctrl-C, if the disk can hold it (its arrays
        uncompressed: an upper bound on what LZF writes)."""
        self.interrupt()
        label = case.label.nbytes if case.label is not None else 0
        check_free_space(self.out, case.image.size * 4 + label, f"case {case.case_id}")
        super().add(case, split, source)
        self.interrupt()

    def _write(self, case: CaseVolume) -> None:
        try:
            super()._write(case)
        except (OSError, RuntimeError) as exc:  # h5py reports a failed write as either
            raise _write_error(self.out / "cases" / f"{case.case_id}.h5", exc) from None

    def finish(self, **extra) -> None:
        """Join the --unlabeled scans (normalised as the source's were), then write dataset.json; a dataset
        of images alone is recorded as one to pre-train on."""
        self.interrupt()
        if self.unlabelled is not None:
            normalization = extra.get("normalization", "percentile")
            rescale = (self.scale_chooser(self.scale_from, normalization, *self._task())
                       if self.scale_from else None)
            factors = import_unlabelled(self.unlabelled, self, normalization, self.patient_rule, rescale)
            extra["unlabelled_from"] = str(self.unlabelled)
            self.notes.append(f"--unlabeled: {len(factors)} scans of {self.unlabelled} joined the train split, "
                              "unlabelled")
            if self.scale_from:
                extra["unlabelled_scale_from"] = str(self.scale_from)
                self.notes.append(rescale_note(factors, self.scale_from))
        if self.info["cases"] and not any(c["labeled"] for c in self.info["cases"]):
            self._unlabelled()
        try:
            super().finish(**extra)
        except OSError as exc:
            raise _write_error(self.out / "dataset.json", exc) from None
        self.interrupt()

    def _task(self) -> tuple[list[str] | None, float | None]:
        """The classes (None where no label names them yet) and median in-plane spacing (mm) of the cases
        imported so far: what a run choosing the --unlabeled scans' scale must match."""
        labelled = any(c["labeled"] for c in self.info["cases"])
        classes = None if self.infer_classes or not labelled else list(self.info["classes"])
        return classes, median_in_plane(c.get("spacing") for c in self.info["cases"])

    def _unlabelled(self) -> None:
        """No case has a label: the dataset can be pre-trained on (labels never read), not fine-tuned; its
        classes are unknown unless --classes named them."""
        if self.infer_classes:
            self.infer_classes = False
            self.info["classes"] = list(UNLABELLED_CLASSES)
        warnings.warn(f"{self.info['source']}: no case has a label; {self.out} is a dataset to pre-train on "
                      "(idealseg pretrain), fine-tuning needs labels (labelsTr/)", stacklevel=3)


def rescale_note(factors: list[float], run: Path) -> str:
    """What the scale search of `run` did to the unlabelled scans, in one line."""
    moved = [f for f in factors if f != 1.0]
    if not moved:
        return f"--unlabeled-scale-from: {run} kept every scan at its header's spacing"
    return (f"--unlabeled-scale-from: {run} stored {len(moved)} of {len(factors)} scans at another multiple of their "
            f"header's in-plane spacing (median x{float(np.median(factors)):g}, range x{min(factors):g} to "
            f"x{max(factors):g})")


def _write_error(path: Path, exc: Exception) -> IdealsegError:
    """One line naming the file of OUT a write failed on (a full disk, a read-only folder), not its
    temporary name."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return InputError(path, f"could not write ({reason})")


def _named_in_out(exc: InputError, tmp: Path | None, out: Path) -> InputError:
    """`exc` naming its file by where it goes in OUT, when it names one in the folder being built."""
    path = Path(exc.path)
    if tmp is None or not path.is_relative_to(tmp):
        return exc
    return InputError(out / path.relative_to(tmp), exc.problem)


def prepare(
    source: str,
    src: str | Path | None = None,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    patients: int = 20,
    seed: int = 0,
    normalization: str = "percentile",
    label_map: str | dict[int, int] | None = None,
    classes: list[str] | str | None = None,
    val: str | int | list[str] | None = None,
    test: str | int | list[str] | None = None,
    spacing_from: str | Path | None = None,
    patient_regex: str | None = None,
    unlabeled: str | Path | None = None,
    unlabeled_scale_from: str | Path | None = None,
    scale_chooser: ScaleChooser | None = None,
) -> Path:
    """Import `src` (of kind `source`) into the dataset folder `out`, in the command line's order (source,
    SRC, OUT; the phantom has no SRC: `prepare("phantom", OUT)`, as on the command line); returns `out`.
    Prints what the import
    decided for the user (a default validation split) and one line per split. `unlabeled_scale_from`
    needs `scale_chooser` (`idealseg.prepare` gives the scale search of inference/rescale.py)."""
    source = checks.text(source, "source", tuple(importer_names()))
    if not get_importer(source).needs_src and out is None and src is not None:  # its one folder is OUT, as on the CLI
        src, out = None, src
    check_argument_order(source, src, out)
    out = checks.output_path(out, "OUT")
    src, spacing_from = checks.optional_path(src, "SRC"), checks.optional_path(spacing_from, "--spacing-from")
    unlabeled = checks.optional_path(unlabeled, "--unlabeled")
    scale_from = checks.optional_path(unlabeled_scale_from, "--unlabeled-scale-from")
    overwrite, seed = checks.flag(overwrite, "--overwrite"), checks.seed(seed)
    patients = checks.whole_number(patients, "--patients", 1)
    normalization = checks.text(normalization, "--normalize", NORMALIZATIONS)
    label_map, classes = label_map_text(label_map), class_names(classes)
    val, test = split_text(val, "--val"), split_text(test, "--test")
    if classes is not None and (len(classes) < 2 or not all(c.strip() for c in classes)):
        raise IdealsegError(f"--classes {','.join(classes)!r}: give at least two non-empty names, background first")
    if get_importer(source).needs_src:
        if src is None or not Path(src).is_dir():
            raise InputError(src or "SRC", "source folder not found")
        src = Path(src)
        check_no_overlap(out, [src, spacing_from, unlabeled], "output folder")
    if spacing_from is not None and (source != "ssl4mis" or not Path(spacing_from).is_dir()):
        raise InputError(spacing_from, "--spacing-from takes the NIfTI release's folder, for prepare ssl4mis only")
    mapping = parse_label_map(label_map) if source == "nifti" else None
    if unlabeled is not None and not Path(unlabeled).is_dir():
        raise InputError(unlabeled, "--unlabeled: folder not found")
    if scale_from is not None and unlabeled is None:
        raise IdealsegError("--unlabeled-scale-from: rescales the --unlabeled scans; give --unlabeled DIR too")
    if scale_from is not None and not Path(scale_from).is_dir():
        raise InputError(scale_from, "--unlabeled-scale-from: run folder not found")
    if scale_from is not None and scale_chooser is None:
        raise IdealsegError("--unlabeled-scale-from: needs a model's scale search; call idealseg.prepare")
    if patient_regex is not None and source != "nifti" and unlabeled is None:
        raise IdealsegError(f"--patient-regex: for prepare nifti or --unlabeled; {source} knows its patients")
    rule = compile_rule(patient_regex)
    notes: list[str] = []
    with deferred_interrupt() as interrupt:
        check_free_space(out, estimated_size(src, patients))
        committing, tmp = False, None
        try:
            with atomic_dir(out, overwrite=overwrite) as tmp:
                _import(source, tmp, out, src, interrupt, patients=patients, seed=seed, normalization=normalization,
                        mapping=mapping, classes=classes, val=val, test=test, spacing_from=spacing_from,
                        patient_rule=rule, notes=notes, unlabeled=unlabeled, scale_from=scale_from,
                        scale_chooser=scale_chooser)
                write_plan(tmp)
                interrupt()
                committing = True
        except OSError as exc:  # marking and renaming the complete folder into place
            if not committing:
                raise
            raise _write_error(out, exc) from None
        except InputError as exc:  # a failed write names the file in OUT, not in the folder being built
            raise _named_in_out(exc, tmp, out) from None
    for line in [*notes, *split_summary(Dataset(out))]:
        print(line)
    return out


ORDER = "prepare(source, SRC, OUT), as the command line (the phantom: prepare('phantom', OUT))"


def check_argument_order(source: str, src: str | Path | None, out: str | Path | None) -> None:
    """The arguments in the command line's order, or a loud error: the order was once (source, OUT, SRC),
    and a call in that order must not import the output folder or write over the source."""
    if not get_importer(source).needs_src and src is not None:
        raise IdealsegError(f"prepare {source}: the {source} is generated and reads no SRC ({src}); the order is "
                            f"{ORDER}")
    if out is None:
        raise IdealsegError(f"prepare {source}: no OUT given; the order is {ORDER}")
    if not get_importer(source).needs_src:
        return
    if not isinstance(src, (str, Path)) or not isinstance(out, (str, Path)):
        return  # checks.optional_path and checks.output_path say what is wrong with the value
    src_p, out_p = Path(src), Path(out)
    a_source_as_out = not src_p.is_dir() and out_p.is_dir() and read_manifest(out_p) is None
    a_dataset_as_src = src_p.is_dir() and (read_manifest(src_p) or {}).get("kind") == "dataset"
    if a_source_as_out or a_dataset_as_src:
        raise InputError(src_p, f"is not a source folder (SRC) but {out_p} may be: the order is {ORDER}")


def split_summary(dataset: Dataset) -> list[str]:
    """One line per split: scans, patients, labelled scans (what each stage will see)."""
    lines = []
    for split in ("train", "val", "test"):
        cases = dataset.split(split)
        if cases:
            patients = len({c.patient for c in cases})
            lines.append(f"{split}: {len(cases)} scan{'s' * (len(cases) != 1)} of {patients} "
                         f"patient{'s' * (patients != 1)}, {sum(c.labeled for c in cases)} labelled")
    return lines


def _import(source: str, tmp: Path, out: Path, src: Path | None, interrupt: Callable[[], None], *, patients: int,
            seed: int, normalization: str, mapping: dict[int, int] | None, classes: list[str] | None,
            val: str | None, test: str | None, spacing_from: str | Path | None, patient_rule: re.Pattern | None,
            notes: list[str], unlabeled: Path | None, scale_from: Path | None = None,
            scale_chooser: ScaleChooser | None = None) -> None:
    """Run the importer of `source` into the temporary folder `tmp` of `out`; `notes` gets what it decided."""
    found = get_importer(source)
    request = ImportRequest(src, normalization, mapping, classes, val, test, seed, patients,
                            Path(spacing_from) if spacing_from else None, patient_rule)
    spec = found.describe(request)
    writer = GuardedWriter(tmp, out, interrupt, spec.name, spec.classes, spec.source, spec.modality)
    writer.infer_classes = spec.infer_classes or not spec.classes
    writer.unlabelled, writer.patient_rule, writer.scale_from = unlabeled, patient_rule, scale_from
    writer.scale_chooser = scale_chooser
    found.run(request, writer)
    notes.extend(writer.notes)
