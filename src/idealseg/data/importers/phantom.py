"""A synthetic short-axis cine-MRI phantom: the embedded default dataset, generated in seconds.

Each patient gets an ED and an ES volume: a body with fat rim, lungs, liver and textured tissue
around an LV blood pool, a myocardial ring and an RV crescent. Size, ellipticity, orientation,
position, contrast, bias field, noise, slice count and ED->ES contraction vary per patient; the
LV and RV pools share one brightness (and so does fat), so a network must use shape and context.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from idealseg.data.dataset import CaseVolume, DatasetWriter
from idealseg.data.importers.registry import ImportRequest, WriterSpec, importer
from idealseg.data.importers.ssl4mis import ACDC_CLASSES
from idealseg.transforms.normalize import normalize_volume


def _ellipse(yy, xx, cy, cx, ry, rx, angle):
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


class PhantomPatient:
    """Random anatomy of one patient; `volume(phase)` renders ED (0) or ES (1)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.size = int(rng.choice([112, 128, 144]))
        self.spacing_xy = float(rng.uniform(1.3, 1.7))
        self.spacing_z = float(rng.uniform(6.0, 10.0))
        self.slices = int(rng.integers(6, 11))
        self.center = np.array([0.5, 0.5]) + rng.uniform(-0.08, 0.08, 2)
        self.lv_radius = rng.uniform(20, 28)  # mm, ED, at the base
        self.lv_ratio = rng.uniform(0.8, 1.0)
        self.angle = rng.uniform(0, np.pi)
        self.wall = rng.uniform(6, 10)
        self.ef = rng.uniform(0.35, 0.7)  # ED->ES area contraction
        self.rv_dir = rng.uniform(-np.pi, -np.pi / 2)  # RV sits to one side and in front
        self.rv_scale = rng.uniform(1.1, 1.5)
        self.blood = rng.uniform(0.75, 0.95)
        self.myo = rng.uniform(0.2, 0.35)
        self.tissue = rng.uniform(0.35, 0.5)
        self.gain = rng.uniform(200, 1500)
        self.noise = rng.uniform(0.02, 0.06)
        self.texture_seed = int(rng.integers(1 << 31))

    def volume(self, phase: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, label) [Z, H, W] of the cardiac phase `phase` (0 = end-diastole, 1 = end-systole)."""
        n, rng = self.size, np.random.default_rng(self.texture_seed + phase)
        mm = self.spacing_xy
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) * mm
        fov = n * mm
        cy, cx = self.center * fov
        images, labels = [], []
        body_tex = gaussian_filter(rng.normal(0, 1, (n, n)), 3) * 0.6
        contraction = np.sqrt(1 - self.ef) if phase else 1.0
        for z in range(self.slices):
            depth = z / max(self.slices - 1, 1)  # 0 base .. 1 apex
            taper = np.sqrt(max(1 - 0.75 * depth**2, 0.05))
            lab = np.zeros((n, n), np.uint8)
            img = np.zeros((n, n), np.float32)
            body = _ellipse(yy, xx, fov / 2, fov / 2, fov * 0.42, fov * 0.47, 0.0)
            inner = _ellipse(yy, xx, fov / 2, fov / 2, fov * 0.42 - 6, fov * 0.47 - 6, 0.0)
            img[body] = self.blood  # subcutaneous fat, as bright as blood
            img[inner] = self.tissue * (1 + 0.15 * body_tex[inner])
            for side in (-1, 1):  # lungs
                lung = _ellipse(yy, xx, fov * 0.45, fov / 2 + side * fov * 0.26, fov * 0.22, fov * 0.12, 0.2 * side)
                img[lung & inner] = 0.05
            liver = _ellipse(yy, xx, fov * 0.78, fov * 0.35, fov * 0.13 * (0.5 + depth), fov * 0.2, 0.3)
            img[liver & inner] = self.tissue * 1.3
            r_lv = self.lv_radius * taper * contraction
            wall = self.wall * (1 + 0.4 * (1 - contraction))
            endo = _ellipse(yy, xx, cy, cx, r_lv, r_lv * self.lv_ratio, self.angle)
            epi = _ellipse(yy, xx, cy, cx, r_lv + wall, r_lv * self.lv_ratio + wall, self.angle)
            if depth < 0.85:
                d = r_lv + wall * 0.9
                ry, rx = cy + np.sin(self.rv_dir) * d, cx + np.cos(self.rv_dir) * d
                r_rv = (r_lv + wall) * self.rv_scale * (1 - 0.5 * depth) * (0.8 + 0.2 * contraction)
                rv = _ellipse(yy, xx, ry, rx, r_rv * 0.6, r_rv, self.rv_dir + np.pi / 2)
                rv &= ~_ellipse(yy, xx, cy, cx, r_lv + wall + 2, r_lv * self.lv_ratio + wall + 2, self.angle)
                img[rv] = self.blood
                lab[rv] = 1
            img[epi] = self.myo
            lab[epi] = 2
            if depth < 0.95:
                img[endo] = self.blood
                lab[endo] = 3
            pap = rng.random((n, n)) < 0.003  # papillary dots inside the pool
            img[(gaussian_filter(pap.astype(float), 1.0) > 0.05) & endo] = self.myo
            images.append(gaussian_filter(img, 0.8))
            labels.append(lab)
        image = np.stack(images)
        bias = 1 + 0.3 * np.sin(yy / fov * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))[None]
        image = image * bias
        n1, n2 = rng.normal(0, self.noise, (2, *image.shape))
        image = np.sqrt((image + n1) ** 2 + n2**2) * self.gain  # Rician magnitude noise
        return image.astype(np.float32), np.stack(labels)


def phantom_case(seed: int, patient: int, phase: int) -> CaseVolume:
    """One rendered case; the same (seed, patient, phase) gives the same array on any machine."""
    p = PhantomPatient(np.random.default_rng([seed, patient]))
    raw, label = p.volume(phase)
    pid = f"phantom{patient:03d}"
    return CaseVolume(
        f"{pid}_{'ES' if phase else 'ED'}",
        pid,
        normalize_volume(raw),
        label,
        (p.spacing_z, p.spacing_xy, p.spacing_xy),
        np.diag([p.spacing_xy, p.spacing_xy, p.spacing_z, 1.0]),
        (2, 1, 0),
        {"phase": "ES" if phase else "ED", "raw_gain": p.gain},
    )


def phantom_raw(seed: int, patient: int, phase: int) -> tuple[np.ndarray, np.ndarray, PhantomPatient]:
    """The un-normalised [Z, H, W] volume and label, for writing realistic NIfTI test inputs."""
    p = PhantomPatient(np.random.default_rng([seed, patient]))
    image, label = p.volume(phase)
    return image, label, p


def import_phantom(writer: DatasetWriter, patients: int, seed: int) -> None:
    """Patients are split 60/20/20 into train/val/test (at least one each from 3 patients on)."""
    n_test = max(1, round(patients * 0.2)) if patients >= 3 else 0
    n_val = max(1, round(patients * 0.2)) if patients >= 3 else 0
    for i in range(patients):
        split = "test" if i >= patients - n_test else "val" if i >= patients - n_test - n_val else "train"
        for phase in (0, 1):
            writer.add(phantom_case(seed, i, phase), split, f"phantom(seed={seed}, patient={i})")
    writer.finish(phantom={"patients": patients, "seed": seed}, normalization="percentile")


PHANTOM_CLASSES = ACDC_CLASSES


def _describe(req: ImportRequest) -> WriterSpec:
    return WriterSpec("phantom", PHANTOM_CLASSES, "phantom", "synthetic cine-MRI")


@importer("phantom", describe=_describe, needs_src=False)
def run_phantom(req: ImportRequest, writer: DatasetWriter) -> None:
    """`idealseg prepare phantom OUT [--patients N] [--seed S]`: generated, no download."""
    import_phantom(writer, req.patients, req.seed)
