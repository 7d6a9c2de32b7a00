"""benchmarks/scripts/robustness.py re-frames volumes and labels alike, at the field of view and spacing it names."""

from __future__ import annotations

import numpy as np

from ..conftest import load_benchmark_script


def test_reframing_keeps_image_and_label_together():
    rb = load_benchmark_script("robustness")
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (3, 200, 160)).astype(np.uint8)
    image = label.astype(np.float32) * 10  # the image encodes its label
    spacing = (8.0, 1.5, 1.5)  # 300 x 240 mm
    for how in rb.FRAMINGS:
        im, lab, sp = rb.reframe(image, label, spacing, how)
        assert im.shape == lab.shape and set(np.unique(lab)) <= {0, 1, 2, 3}
        if how != "1.0 mm" and how != "2.0 mm":
            assert np.array_equal(np.round(im / 10).astype(np.uint8), lab), how  # no interpolation: exact
    assert rb.reframe(image, label, spacing, "crop 240 mm")[1].shape == (3, 160, 160)
    assert rb.reframe(image, label, spacing, "pad 480 mm")[1].shape == (3, 320, 320)
    _, lab, sp = rb.reframe(image, label, spacing, "1.0 mm")
    assert lab.shape == (3, 300, 240) and sp == (8.0, 1.0, 1.0)  # same field of view, finer grid
    _, lab, sp = rb.reframe(image, label, spacing, "transpose")
    assert lab.shape == (3, 160, 200)
