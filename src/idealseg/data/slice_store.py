"""All training slices of a dataset in memory as tensors, so the training loop never reads files.

Without a target spacing, slices are resized to the run's square input size (bilinear images,
nearest labels), the rule SSL4MIS uses. With one (physical space, data/target_spacing.py), each slice is
resampled to that spacing and centred on a square canvas, from which every step crops its patch.
Labels are kept as uint8 (a quarter of int64's memory on a canvas) and widened per batch. A dataset of
several channels keeps them as the channel axis of each slice, resampled alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from idealseg.data.budgets import Budget
from idealseg.data.channels import as_channels
from idealseg.data.dataset import Dataset
from idealseg.data.target_spacing import canvas_size
from idealseg.labels import IGNORE_LABEL
from idealseg.transforms.resample import centre, resample, resampled_size
from idealseg.transforms.spacing import in_plane


@dataclass
class SliceStore:
    """Every training slice in memory (at the input size, or on a canvas at the target spacing), so
    that a step never waits for a file."""
    images: torch.Tensor  # float32 [N, C, S, S], C the dataset's channels
    labels: torch.Tensor  # uint8 [N, S, S]; zeros where the case has no label
    labeled: torch.Tensor  # bool [N]: inside the label budget, the only labels a loss may read
    case_ids: list[str]
    slice_index: list[int]
    patients: list[str]

    @classmethod
    def from_dataset(cls, dataset: Dataset, size: int, budget: Budget | None, split: str = "train",
                     spacing: float = 0.0):
        """Load `split` into memory; only slices inside the budget keep their labels. `spacing` > 0:
        slices resampled to that in-plane spacing (mm) on a canvas of at least `size` pixels."""
        allowed = None if budget is None else set(budget.patients)
        exact = None if budget is None or budget.slices is None else set(budget.slices)
        canvas = canvas_size(dataset, spacing, size) if spacing else size

        def fit(slices: torch.Tensor, case_spacing, mode: str) -> torch.Tensor:
            if not spacing:
                return resample(slices, (size, size), mode)
            grid = resampled_size(tuple(slices.shape[-2:]), in_plane(case_spacing), spacing)
            exact = "nearest-exact" if mode == "nearest" else mode  # labels land where bilinear puts the image
            return centre(resample(slices, grid, exact), canvas)

        images, labels, flags, case_ids, idx, patients = [], [], [], [], [], []
        for entry in tqdm(dataset.split(split), desc=f"loading {split} slices", unit="case", leave=False):
            case = dataset.load(entry.id)
            vol = torch.from_numpy(as_channels(case.image)).float().transpose(0, 1)  # [Z, C, H, W]
            images.append(fit(vol, case.spacing, "bilinear"))
            if case.label is not None:
                lab = torch.from_numpy(case.label.astype(np.float32))[:, None]
                labels.append(fit(lab, case.spacing, "nearest")[:, 0].to(torch.uint8))
            else:
                labels.append(torch.zeros(vol.shape[0], canvas, canvas, dtype=torch.uint8))
            for z in range(vol.shape[0]):
                use = case.label is not None and allowed is not None and entry.patient in allowed
                if exact is not None:
                    use = (entry.id, z) in exact
                flags.append(use)
                case_ids.append(entry.id)
                idx.append(z)
                patients.append(entry.patient)
        if not images:
            raise ValueError(f"{dataset.root}: split {split!r} has no cases")
        return cls(
            torch.cat(images).contiguous(),
            torch.cat(labels).contiguous(),
            torch.tensor(flags, dtype=torch.bool),
            case_ids,
            idx,
            patients,
        )

    def truth_probe(self, n: int = 64, seed: int = 0) -> torch.Tensor:
        """Indices of up to `n` unlabelled slices whose case has a label anyway (a fixed, seeded pick).

        Their labels are for diagnostics only (how good a method's pseudo-labels are); no loss reads
        them, as the training loop only hands methods the labels of `labeled` slices.
        """
        has_truth = ((self.labels > 0) & (self.labels != IGNORE_LABEL)).flatten(1).any(1)
        pool = torch.nonzero(~self.labeled & has_truth).flatten()
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
        return pool[order[:n]].sort().values

    def __len__(self) -> int:
        return self.images.shape[0]


class BatchSampler:
    """Draws B_l labelled + B_u unlabelled slice indices per step from shuffled epochs.

    Each pool is walked through a seeded permutation, so a slice is not repeated before the pool
    is exhausted. Under DDP every rank holds the same generator and takes its own shard of the
    global batch, which splits the data without duplicates within a step.
    """

    def __init__(self, labeled: torch.Tensor, b_l: int, b_u: int, seed: int, rank: int = 0, world: int = 1):
        self.pools = {
            "l": torch.nonzero(labeled).flatten(),
            "u": torch.nonzero(~labeled).flatten(),
        }
        if b_u and len(self.pools["u"]) == 0:  # fully labelled: unlabelled stream reuses all slices
            self.pools["u"] = torch.arange(len(labeled))
        if b_l and len(self.pools["l"]) == 0:
            raise ValueError("the label budget selects no labelled slices")
        self.sizes = {"l": b_l, "u": b_u}
        self.rank, self.world = rank, world
        self.generator = torch.Generator().manual_seed(seed)
        self.order = {k: torch.empty(0, dtype=torch.long) for k in self.pools}

    def _take(self, key: str, n: int) -> torch.Tensor:
        """n indices with no repeat (while n <= pool size), walking through shuffled epochs."""
        pool, order = self.pools[key], self.order[key]
        while len(order) < n:
            # a new epoch starts with the previous epoch's leftovers, so one draw never repeats a slice
            perm = pool[torch.randperm(len(pool), generator=self.generator)]
            order = torch.cat([order, perm[~torch.isin(perm, order)]]) if len(order) < len(pool) else \
                torch.cat([order, perm])
        self.order[key] = order[n:]
        return order[:n]

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(labelled indices, unlabelled indices) of this rank for one step."""
        shards = []
        for key in ("l", "u"):
            n = self.sizes[key]
            full = self._take(key, n * self.world)
            shards.append(full[self.rank * n : (self.rank + 1) * n])
        return shards[0], shards[1]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": dict(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = dict(state["order"])
