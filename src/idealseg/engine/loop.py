"""The training loop, a part of the Trainer: budgets in steps (or seconds), the schedule, one step,
finite-loss checks, progress with a time estimate, the end of a run."""

from __future__ import annotations

import json
import math
import time

import torch
from tqdm import tqdm

from idealseg.atomic import atomic_file
from idealseg.engine import distributed
from idealseg.errors import IdealsegError
from idealseg.runfolder.environment import cpu_model
from idealseg.transforms.patches import crop_patches

ETA_AFTER_STEPS = 10  # steps timed before the time the whole budget takes is said


def _duration(seconds: float) -> str:
    """'3 h 05 min', '12 min', '40 s': a duration as a user reads it."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{round(seconds / 60)} min" if seconds >= 90 else f"{round(seconds)} s"



class Loop:
    """The Trainer's loop (engine/trainer.py builds what it runs: model, optimizer, scaler, sampler,
    store)."""

    def progress(self) -> float:
        """How far through its budget the run is, in [0, 1]: steps or seconds, whichever is further."""
        p = self.step / self.cfg.iterations
        if self.cfg.time_budget:
            p = max(p, self.elapsed / self.cfg.time_budget)
        return min(p, 1.0)

    def _done(self) -> bool:
        return distributed.broadcast_flag(self.ctx, self.progress() >= 1.0)

    def _batch(self):
        idx_l, idx_u = self.sampler.next()
        images, labels = crop_patches(self.store.images[torch.cat([idx_l, idx_u])], self.store.labels[idx_l],
                                      len(idx_l), self.cfg.input_size)
        if self.ctx.device.type == "cuda":  # a copy from pageable memory would wait for the queued steps
            images, labels = images.pin_memory(), labels.pin_memory()
        images = images.to(self.ctx.device, non_blocking=True)
        labels = labels.to(self.ctx.device, non_blocking=True).long()
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels, len(idx_l)

    def fit(self) -> dict:
        """Train until the budget ends, validating, logging and checkpointing; returns the summary."""
        self.method.train()
        bar = self._progress_bar()
        self._log_rows: list[dict] = []
        self._log_kept = self.step  # log.csv's rows up to the checkpoint resumed from are kept
        self._last_ckpt = self.step
        self._unread: list[torch.Tensor] = []  # losses not yet read back from the device (see _check_finite)
        self._eta_from: tuple[int, float] | None = None  # (step, seconds) the time estimate counts from
        self._eta_said = False
        while not self._done():
            losses, lr = self._train_step()
            logging = self.step % self.cfg.log_every == 0 or self.progress() >= 1.0  # local: no extra collective
            if logging or self._checkpoint_due() or self._validation_due():
                losses = self._read_losses(losses)
            self._log(bar, losses if logging else None, lr)
            if self._validation_due() and self.ctx.is_main and self.val_cases:
                self._log_rows.append({"step": self.step, "time": round(self.elapsed, 2), **self.validate()})
            if self._checkpoint_due():
                self._checkpoint()
        bar.close()
        self._finish()
        return self._summary()

    # -- the steps of fit ---------------------------------------------------------------------
    def _progress_bar(self) -> tqdm:
        """Rank 0's bar from the step a resume starts at (its total follows a time budget)."""
        return tqdm(total=self.cfg.iterations, initial=self.step, disable=not self.ctx.is_main, unit="it",
                    desc=f"{self.cfg.stage} {self.cfg.method}", dynamic_ncols=True, mininterval=2.0)

    def _schedule(self) -> tuple[float, float]:
        """(progress, learning rate) of this step: poly decay over the budget, steps or seconds, decided
        by rank 0 so that every rank follows one schedule whatever its own clock says."""
        progress = distributed.broadcast_value(self.ctx, self.progress())
        lr = self.cfg.lr * (1 - progress) ** self.cfg.poly_power
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return progress, lr

    def _train_step(self) -> tuple[dict, float]:
        """One optimizer step of the method's losses under autocast; its time counts in the budget.
        The losses stay on the device (reading them back would wait for it every step)."""
        t0 = time.perf_counter()
        progress, lr = self._schedule()
        images, labels, n_l = self._batch()
        with torch.autocast(self.ctx.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            losses = self.model(images, labels, n_l, progress)
        loss = losses["loss"]
        self._unread.append(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.on_step_end()
        self.step += 1
        self.elapsed += time.perf_counter() - t0
        return losses, lr

    def _checkpoint_due(self) -> bool:
        """Whether this step ends with a checkpoint (every `checkpoint_every` steps)."""
        return self.step % self.cfg.checkpoint_every == 0

    def _validation_due(self) -> bool:
        """Whether this step validates (every `val_every` steps; 0 never)."""
        return bool(self.cfg.val_every) and self.step % self.cfg.val_every == 0

    def _read_losses(self, losses: dict) -> dict[str, float]:
        """The step's losses as numbers, and every unread loss checked finite: the one wait for the
        device in a step, taken only before something is logged or saved; the wait is the step's
        compute, so it counts in the budget."""
        t1 = time.perf_counter()
        losses = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()}
        self._check_finite(self._unread, self._last_ckpt)
        self.elapsed += time.perf_counter() - t1
        return losses

    def _finish(self) -> None:
        """After the last step: check the losses a budget ended between checks left unread (another
        rank's clock under DDP), validate the final weights where the last step did not, and save them."""
        cfg, ctx = self.cfg, self.ctx
        if self._unread:
            self._check_finite(self._unread, self._last_ckpt)
        if cfg.val_every and ctx.is_main and self.val_cases and (self.step % cfg.val_every or self.last_val is None):
            self._log_rows.append({"step": self.step, "time": round(self.elapsed, 2), **self.validate()})
        self._flush_log(self._log_rows)
        # a finished pre-training resumed without its encoder.pt writes it again (rank 0's disk decides:
        # save() is a collective)
        no_encoder = cfg.stage == "pretrain" and distributed.broadcast_value(
            ctx, float(not (self.run_dir / "encoder.pt").exists())) > 0
        if self.step != self._last_ckpt or no_encoder:
            self.save()
        self._draw_progress()

    def _summary(self) -> dict:
        """summary.json: steps, seconds and validation Dice, and whether predictions keep each class's
        largest component; written by rank 0, returned on every rank."""
        summary = {"steps": self.step, "seconds": round(self.elapsed, 1), "best_val_dice": self.best}
        if self.ctx.is_main and self.val_cases and self.last_val is not None:
            # nnU-Net's post-processing rule: keep each class's largest component where that raised
            # validation Dice; predict and evaluate then apply it unless told otherwise
            summary["final_val_dice"] = self.last_val
            summary["largest_component"] = bool(self.last_val_cleaned > self.last_val)
        if self.ctx.is_main:
            self._record("summary.json")
            with atomic_file(self.run_dir / "summary.json") as f:
                json.dump(summary, f, indent=1)
        if self.board is not None:
            self.board.close()
        distributed.barrier(self.ctx)
        return summary

    def _check_finite(self, unread: list[torch.Tensor], last_ckpt: int) -> None:
        """Stop on the first non-finite loss among the steps since the last check, naming its step.

        Why deferred: reading a loss back each step makes the host wait for the device every step, so
        the next step's kernels cannot be queued while this one computes; on a GPU, at the gpu profile's
        size, the step is bound by those launches. Checked at every log, validation and checkpoint step
        (one wait), so no checkpoint is written after a non-finite loss and its step is still exact."""
        values = torch.stack(unread).float().cpu()
        first = self.step - len(unread)
        unread.clear()
        bad = torch.nonzero(~torch.isfinite(values))
        error = None
        if len(bad):
            i = int(bad[0])
            where = self.run_dir / "checkpoints" / "last.pt"
            good = f"last good checkpoint: {where} (step {last_ckpt})" if where.exists() else "no checkpoint yet"
            error = IdealsegError(f"training diverged: loss is {float(values[i])} at step {first + i + 1}; {good}")
        distributed.share_failure(self.ctx, error)  # each rank sees its own shard's loss: all stop, saying why
        if error is not None:
            raise error

    def _update_bar(self, bar, losses: dict[str, float] | None) -> None:
        self._say_eta()
        if self.cfg.time_budget and self.elapsed > 0:
            expected = min(self.cfg.iterations, math.ceil(self.step / self.elapsed * self.cfg.time_budget))
            bar.total = max(expected, self.step)
        bar.update(self.step - bar.n)
        if losses is not None:
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)

    def _say_eta(self) -> None:
        """Once, a few steps in: what a step costs on this machine and how long the step budget will take
        here (budgets count steps, so the same command takes longer on a slower or busier machine)."""
        if self._eta_from is None:  # after the first step: its warm-up is not a step's cost
            self._eta_from = (self.step, self.elapsed)
        start = self._eta_from
        steps = self.step - start[0]
        if self._eta_said or steps < min(ETA_AFTER_STEPS, self.cfg.iterations - start[0]):
            return
        self._eta_said = True
        if not self.ctx.is_main or steps <= 0:
            return
        rate = (self.elapsed - start[1]) / steps
        left = self.cfg.iterations - self.step
        if self.cfg.time_budget and rate * left > self.cfg.time_budget - self.elapsed:  # the clock ends it first
            steps_in_time = max(0, int((self.cfg.time_budget - self.elapsed) / rate))
            tqdm.write(f"{rate:.3g} s a step on this machine ({cpu_model()}): the time budget of "
                       f"{self.cfg.time_budget:g} s ends the run after about {self.step + steps_in_time} steps "
                       "(validation not counted)")
            return
        tqdm.write(f"{rate:.3g} s a step on this machine ({cpu_model()}): the {left} steps left take about "
                   f"{_duration(rate * left)} (plus validation)")
