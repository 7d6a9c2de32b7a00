"""Validation during fine-tuning, a part of the Trainer: the run's own predictor over the labelled
validation volumes (best.pt, the post-processing choice) and the pseudo-label diagnostics."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from tqdm import tqdm

from idealseg.evaluation.metrics import class_dice, mean_foreground_dice, mean_present
from idealseg.inference.predictor import Predictor
from idealseg.runfolder.checkpoint import save_checkpoint
from idealseg.transforms.components import largest_components


class Validation:
    """The Trainer's validation (engine/trainer.py holds the state it reads: method, cfg, val_cases,
    store, probe, best)."""

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean foreground 3D Dice over labelled val volumes (keeps best.pt), each class's, and
        pseudo-label quality; a bar while it runs (a large validation set takes minutes). A class absent
        from a volume (in neither its reference nor the mask: metrics.py) is not scored there, so it
        cannot lift the mean that picks best.pt; the first validation says how many pairs that is."""
        self.method.eval()
        scores, cleaned, per_class = [], [], []
        n = self.cfg.num_classes
        predictor = Predictor.from_method(self.method, self.cfg, self.ctx.device)
        for case in tqdm(self.val_cases, desc="validate", unit="vol", leave=False, mininterval=2.0):
            mask = predictor.predict(case.image, case.spacing)
            per_class.append(class_dice(mask, case.label, n))
            scores.append(mean_present(per_class[-1]))
            cleaned.append(mean_foreground_dice(largest_components(mask, n), case.label, n))
        classes = self.cfg.classes[1:] if len(self.cfg.classes) == n else [f"class{c}" for c in range(1, n)]
        by_class = {f"val_dice_{name}": round(mean_present(v), 5) for name, v in zip(classes, np.transpose(per_class),
                                                                                      strict=True)}
        self._say_absent(np.isnan(per_class).sum())
        quality = self.pseudo_label_quality()
        self.method.train()
        self.last_val, self.last_val_cleaned = mean_present(scores), mean_present(cleaned)
        if self.last_val > self.best:
            self.best = self.last_val
            self._record("checkpoints/best.pt")
            save_checkpoint({"model": self.method.state_dict(), "step": self.step, "val_dice": self.best},
                            self.run_dir / "checkpoints" / "best.pt", keep_previous=False)
        tqdm.write(f"step {self.step}: val Dice {self.last_val:.4f} (best {self.best:.4f})")
        return {"val_dice": round(self.last_val, 5), "val_dice_largest_component": round(self.last_val_cleaned, 5),
                **by_class, **quality}

    def _say_absent(self, absent: int) -> None:
        """Once a run (the validation volumes never change): how many class/volume pairs are not scored."""
        if absent and not self.absent_said:
            self.absent_said = True
            warnings.warn(f"validation: {absent} class/volume pair(s) of {len(self.val_cases)} volume(s) have the "
                          "class in neither the reference nor the mask; they are excluded from val Dice",
                          stacklevel=3)

    def pseudo_label_quality(self) -> dict[str, float]:
        """Dice of each stream's hard prediction on unlabelled training slices against their true labels
        (a diagnostic: no loss ever reads those labels), and the share of pixels where streams disagree."""
        if not len(self.probe):
            return {}
        truth = self.store.labels[self.probe].numpy()
        chunks = [self.method.streams_argmax(self.store.images[part].to(self.ctx.device))
                  for part in self.probe.split(16)]  # canvases can be 4x a patch: bounded memory
        streams = {k: torch.cat([c[k] for c in chunks]).cpu().numpy() for k in chunks[0]}
        row = {f"pl_dice_{name}": round(mean_foreground_dice(pred, truth, self.cfg.num_classes), 5)
               for name, pred in streams.items()}
        if len(streams) == 2:
            a, b = streams.values()
            row["pl_disagree"] = round(float((a != b).mean()), 5)
        return row
