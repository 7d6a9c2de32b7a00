"""Label codes as sources write them and class numbers as idealseg stores them: `--label-map` parsed
and applied (MMWHS's 205, 420, ...; 0/255 masks), unannotated voxels kept apart, and, where a label
needs a map, one suggested that covers every label file so that a single paste works."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from idealseg.data.dataset import labels_to_uint8
from idealseg.data.nifti_io import load_nifti
from idealseg.errors import IdealsegError, InputError
from idealseg.labels import IGNORE_LABEL

MAX_CLASS = 31  # more classes than this, without a --label-map, is a coded mask (0/255), not a class set


def parse_label_map(spec: str | None) -> dict[int, int] | None:
    """'205:1,420:2' -> {205: 1, 420: 2}."""
    if not spec:
        return None
    mapping: dict[int, int] = {}
    for item in spec.split(","):
        try:
            src, dst = (int(v) for v in item.split(":"))
        except ValueError:
            raise IdealsegError(f"--label-map entry {item!r} is not SRC:DST with integers") from None
        if src in mapping:
            raise IdealsegError(f"--label-map maps {src} twice ({src}:{mapping[src]} and {item}); keep one")
        if not 0 <= dst <= MAX_CLASS:
            raise IdealsegError(f"--label-map entry {item!r}: the class number must be 0 to {MAX_CLASS}")
        mapping[src] = dst
    return mapping


def apply_label_map(label: np.ndarray, mapping: dict[int, int] | None, path: Path,
                    ignore: int | None = None) -> np.ndarray:
    """Renumber codes; a non-zero code absent from the map is refused, naming the file. Voxels of the
    `ignore` code (nnU-Net's unannotated voxels) become IGNORE_LABEL, whatever the map."""
    if ignore is not None:
        unannotated = label == ignore
        out = apply_label_map(np.where(unannotated, 0, label), mapping, path)
        out[unannotated] = IGNORE_LABEL
        return out
    if mapping is None:
        return labels_to_uint8(label, path)
    values = np.unique(label)
    if not np.isfinite(values).all():
        raise InputError(path, "label contains NaN or Inf values")
    if not np.all(np.mod(values, 1) == 0):
        raise InputError(path, "label has fractional values; expected integer codes")
    unknown = [int(v) for v in values if v != 0 and int(v) not in mapping]
    if unknown:
        raise InputError(path, f"label values {unknown} are not in the label map (map them to 0 to drop)")
    out = np.zeros(label.shape, dtype=np.uint8)
    for code in sorted(mapping):
        out[label == code] = mapping[code]
    return out


def suggest_label_map(codes: list[int], existing: dict[int, int] | None = None,
                      classes: list[str] | None = None) -> tuple[str, str]:
    """A --label-map that maps every code in `codes` (with `existing` entries kept), as text to paste,
    and a note on how it was chosen. New codes take the free class numbers in ascending order: the
    order of --classes when given (a class named after a code, e.g. "500", takes that code), else
    1, 2, ...; codes with no class number left map to 0 (dropped), and the note says so."""
    mapping = dict(existing or {})
    limit = len(classes) - 1 if classes else MAX_CLASS
    names = classes[1:] if classes else []
    new = sorted({int(c) for c in codes} - set(mapping) - {0})
    for code in new:
        if str(code) in names:
            mapping[code] = names.index(str(code)) + 1
    used = {d for d in mapping.values() if d}
    free = iter([n for n in range(1, limit + 1) if n not in used])
    dropped = []
    for code in new:
        if code not in mapping:
            mapping[code] = next(free, 0)
            if not mapping[code]:
                dropped.append(code)
    entries = sorted(mapping.items(), key=lambda kv: (kv[1] == 0, kv[1], kv[0]))
    text = ",".join(f"{c}:{d}" for c, d in entries)
    notes = []
    if classes:
        named = ", ".join(f"{c}={classes[d]}" for c, d in entries if d and d < len(classes))
        notes.append(f"{named}: codes in ascending order onto --classes in its order; check it")
    else:
        notes.append("codes in ascending order")
    if dropped:
        room = f"--classes names {limit} classes after background" if classes else f"at most {MAX_CLASS} classes"
        notes.append(f"{dropped[:6]} mapped to 0 (dropped): {room}")
    return text, "; ".join(notes)


def _integer_codes(label: np.ndarray) -> list[int]:
    """The distinct integer values of a label (fractional ones are refused elsewhere, by name)."""
    values = np.unique(label)
    return [int(v) for v in values if np.isfinite(v) and float(v).is_integer()]


def _all_codes(paths: list[Path]) -> list[int]:
    """Every label code of every label file, so that a suggested map is complete and one paste works
    (read only on the error path; an unreadable file is skipped here and reported in its turn)."""
    codes: set[int] = set()
    for path in paths:
        try:
            data = load_nifti(path, check_spacing=False)[0]
        except InputError:
            continue
        codes.update(_integer_codes(np.asarray(data)))
    return sorted(codes)


class LabelCodes:
    """The label files of an import and the user's --label-map and --classes: checks one label's
    codes and, when they need a map, suggests one that covers every label file."""

    def __init__(self, paths: list[Path], label_map: dict[int, int] | None, classes: list[str] | None,
                 ignore: int | None = None):
        self.paths, self.label_map, self.classes, self.ignore = paths, label_map, classes, ignore
        if ignore is not None and label_map is not None and ignore in label_map:
            raise IdealsegError(f"--label-map maps {ignore}, the source dataset.json's 'ignore' label (unannotated "
                                "voxels, never a class); leave it out of the map")

    def check(self, label: np.ndarray, path: Path) -> None:
        """Without a map, values must be class numbers 0..MAX_CLASS (0/255 masks and coded atlases need
        --label-map); with one, every non-zero code must be in it. The `ignore` code is neither."""
        codes = [c for c in _integer_codes(label) if c not in (0, self.ignore)]
        if self.label_map is None:
            coded = [c for c in codes if not 0 <= c <= MAX_CLASS]
            if coded:
                hint, note = suggest_label_map(_all_codes(self.paths), None, self.classes)
                raise InputError(path, f"label values {codes[:6]} are not class numbers 0..{MAX_CLASS}; map them "
                                       f"to classes, e.g. --label-map={hint} ({note})")
            return
        unknown = [c for c in codes if c not in self.label_map]
        if unknown:
            hint, note = suggest_label_map(_all_codes(self.paths), self.label_map, self.classes)
            raise InputError(path, f"label values {unknown[:6]} are not in the label map; e.g. --label-map={hint} "
                                   f"({note}; map a code to 0 to drop it)")
