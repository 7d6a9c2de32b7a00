"""Agreement under test-time perturbations: a quality signal measured beside `predict`'s score
(inference/quality.py).

`perturbation_agreement` (mean foreground Dice between the mask and the masks of the flipped scan and
of 0.9x and 1.1x the chosen spacing) was the best on ACDC for two runs of three (0.67 to 0.86) but
weaker on the other centre (0.55 to 0.81), for three more inferences a scan; it is kept for callers
that can afford them. With 10 scans the 95 % intervals of either span about 0.5: neither is shown to
beat the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from idealseg.evaluation.metrics import mean_foreground_dice


def perturbation_agreement(mask: np.ndarray, perturbed: Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]],
                           num_classes: int) -> float:
    """Mean foreground Dice between a label volume `mask` and the masks of the same scan under
    test-time perturbations (given, or a callable that makes them), in [0, 1]: 1 when every
    perturbation gives the same mask."""
    others = perturbed() if callable(perturbed) else perturbed
    if not len(others):
        raise ValueError("perturbation_agreement needs at least one perturbed mask")
    return float(np.mean([mean_foreground_dice(mask, p, num_classes, absent=1.0) for p in others]))
