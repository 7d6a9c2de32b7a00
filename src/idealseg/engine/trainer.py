"""The one training loop shared by every method (pre-training and fine-tuning alike).

It owns devices, AMP, DDP, the learning-rate schedule, budgets in iterations or wall-clock
seconds, progress, logging, validation, checkpoints and resume; methods own only their step.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import random
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from idealseg.atomic import atomic_file, atomic_path
from idealseg.config import RunConfig
from idealseg.data.physical import crop_patches
from idealseg.data.slice_store import BatchSampler, SliceStore
from idealseg.engine import distributed
from idealseg.engine.compiled import compile_mode, compile_networks, fused
from idealseg.engine.run_setup import RunSetup, setup_run
from idealseg.errors import IdealsegError, InputError
from idealseg.evaluation.metrics import class_dice, mean_foreground_dice
from idealseg.inference.predictor import Predictor
from idealseg.methods import get_method
from idealseg.ownership import RUN_FILES, check_no_overlap, record_written, replace_folder, write_manifest
from idealseg.precision import autocast_dtype
from idealseg.runfolder.checkpoint import load_checkpoint, load_latest, save_checkpoint
from idealseg.runfolder.environment import cpu_model, write_environment
from idealseg.runfolder.folder import encoder_state, load_pretrained
from idealseg.runfolder.weights import load_weights
from idealseg.transforms.components import largest_components

PROGRESS_FIGURE_SECONDS = 60  # progress.png is redrawn at most this often (a draw costs about 0.3 s)


def _mean_present(values) -> float:
    """The mean of the scored values (NaN, an absent class or a volume without any, is not scored);
    NaN when there are none."""
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else float("nan")


class DamagedCheckpoint(InputError):
    """A checkpoint that loads but whose fields do not fit (edited, or written by something else)."""


ETA_AFTER_STEPS = 10  # steps timed before the time the whole budget takes is said


def _duration(seconds: float) -> str:
    """'3 h 05 min', '12 min', '40 s': a duration as a user reads it."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{round(seconds / 60)} min" if seconds >= 90 else f"{round(seconds)} s"


class Trainer:
    """Trains one stage of one method into one run folder; everything but the method's step lives here.

    Construction checks every input and the run folder before anything is written, then builds the
    slice store, the method and the optimiser, and restores a checkpoint when resuming."""

    def __init__(self, cfg: RunConfig | RunSetup, run_dir: str | Path | None = None, resume: bool = False,
                 overwrite: bool = False):
        """Set up the run (`cfg` alone: resolved against its dataset and its folder checked here; a
        RunSetup: already checked), build everything it needs, then write; a resume restores the last
        checkpoint."""
        self._recorded: set[str] = set()  # names already in the run's manifest (ownership.record_written)
        self.ctx = distributed.setup((cfg.cfg if isinstance(cfg, RunSetup) else cfg).device)
        # every rank checks; a refusal on any is every rank's, and rank 0 writes only once all have
        # checked (a slower rank would otherwise find the folder just made and refuse it)
        with distributed.together(self.ctx):
            setup = cfg if isinstance(cfg, RunSetup) else setup_run(cfg, self._run_dir(run_dir), resume, overwrite)
            self.setup, self.cfg, self.run_dir = setup, setup.cfg, setup.run_dir
            self.dataset, self.budget = setup.dataset, setup.budget
            self._configure_torch()
            self._build_data()
            self._build_method()
            self._read_validation_cases()
            self.amp_dtype = autocast_dtype(self.ctx.device, self.cfg.amp)
            self.compile_mode = compile_mode(self.cfg.compile)
        self._prepare_folder(setup.resume, setup.overwrite)  # the first write: everything above is checked
        self._place_on_device()
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step, self.elapsed, self.best, self.last_val, self.last_val_cleaned = 0, 0.0, -1.0, None, None
        self.absent_said = False  # validation has said its absent class/volume pairs (once a run)
        if setup.resume:
            self._restore()
        self.board = self._tensorboard()
        self.model = self._wrap()
        self._figure_drawn = time.monotonic()
        if self.ctx.is_main:
            tqdm.write(self.banner())

    # -- set-up steps -------------------------------------------------------------------------
    @staticmethod
    def _run_dir(run_dir: str | Path | None) -> Path:
        """The run folder a bare RunConfig trains into (a RunSetup carries its own)."""
        if run_dir is None:
            raise TypeError("Trainer(cfg, run_dir): a RunConfig needs the run folder to train into")
        return Path(run_dir)

    def _configure_torch(self) -> None:
        """Threads, denormals and seeds before any tensor is made, so that a run is reproducible."""
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        # Long CPU runs let weights and Adam's moments of quiet channels decay into denormal floats, which
        # x86 cores compute 10-100x slower: a 12630-step cell slowed 3x after step 9000. Flushing them to
        # zero costs nothing a model can see (they are below 1.2e-38).
        torch.set_flush_denormal(True)
        self._seed(self.cfg.seed + self.ctx.rank)

    def _build_data(self) -> None:
        """The slice store at the run's spacing and each rank's share of the batches: read (and checked)
        before the folder is written."""
        cfg = self.cfg
        self.store = SliceStore.from_dataset(self.dataset, cfg.input_size, self.budget, spacing=cfg.spacing_mm)
        self.sampler = BatchSampler(
            self.store.labeled, cfg.batch_labeled, cfg.batch_unlabeled, cfg.seed, self.ctx.rank, self.ctx.world
        )

    def _build_method(self) -> None:
        """The method's networks, initialised from a pre-training where `init` names one; under torchrun
        with sync_bn, BatchNorm statistics over every rank's batch."""
        cfg = self.cfg
        self.method = get_method(cfg.method, cfg.stage)(cfg)
        if cfg.init:
            load_pretrained(self.method, cfg.init)
        if self.ctx.distributed and cfg.sync_bn:
            if self.ctx.device.type == "cuda":  # same parameters and state-dict keys, statistics over all ranks
                self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
            elif self.ctx.is_main:
                warnings.warn("sync_bn: SyncBatchNorm needs CUDA; these CPU processes keep per-process BatchNorm "
                              "statistics", stacklevel=3)

    def _read_validation_cases(self) -> None:
        """The labelled validation volumes and the pseudo-label probe, read before anything is written
        (a damaged case is refused then); only rank 0 validates."""
        if self.cfg.stage == "finetune" and self.cfg.val_every and self.ctx.is_main:
            val = self.dataset.split("val")
            self.val_cases = [self.dataset.load(c.id) for c in val if c.labeled]
            if val and not self.val_cases:
                warnings.warn(f"{self.dataset.root}: the val split's {len(val)} volumes are all unlabelled: this run "
                              "never validates (no Dice to follow, no post-processing chosen); give the split a "
                              "labelled patient (prepare --val, or splits_final.json)", stacklevel=3)
            self.probe = self.store.truth_probe(seed=self.cfg.seed)
        else:
            self.val_cases, self.probe = [], torch.empty(0, dtype=torch.long)

    def _place_on_device(self) -> None:
        """The method on the run's device, in channels_last where asked (measured faster)."""
        if self.ctx.device.type == "cuda":  # training shapes are fixed: cuDNN times its algorithms once
            torch.backends.cudnn.benchmark = True
        self.method.to(self.ctx.device)
        if self.cfg.channels_last:
            self.method.to(memory_format=torch.channels_last)

    def _optimizer(self) -> torch.optim.Optimizer:
        """SGD (momentum 0.9) or Adam over the trainable parameters, fused where the device has it."""
        cfg = self.cfg
        params = [p for p in self.method.parameters() if p.requires_grad]
        fuse = fused(self.ctx.device)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, **fuse)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fuse)
        raise IdealsegError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")

    def _wrap(self) -> torch.nn.Module:
        """The module a step calls: compiled where asked (after a restore: weights load into the plain
        module), and under DDP wrapped so gradients are averaged over ranks."""
        if self.compile_mode:
            compile_networks(self.method, self.compile_mode)
        if not self.ctx.distributed:
            return self.method
        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        return DistributedDataParallel(self.method, device_ids=ids)

    def _prepare_folder(self, resume: bool, overwrite: bool) -> None:
        """The first write: the folder (replaced on --overwrite), its manifest, env.json, config.yaml
        and plan.json; every rank waits for rank 0 so that none writes into a folder not yet made."""
        ckpt = self.run_dir / "checkpoints"
        if self.ctx.is_main:
            check_no_overlap(self.run_dir, [self.cfg.dataset, self.cfg.init], "run folder")
            if overwrite and not resume and self.run_dir.exists():  # checked again as it is moved aside
                replace_folder(self.run_dir, None, "run")
            ckpt.mkdir(parents=True, exist_ok=True)
            write_manifest(self.run_dir, "run", RUN_FILES)
            self._record("env.json", "config.yaml", "plan.json", *(("labelled.json",) if self.budget else ()))
            write_environment(self.run_dir, self.ctx.device, self.ctx.world,
                              autocast=str(self.amp_dtype or "off"), compiled=self.compile_mode or "off")
            if not (self.run_dir / "config.yaml").exists() or not resume:
                self.cfg.save(self.run_dir / "config.yaml")
            with atomic_file(self.run_dir / "plan.json") as f:  # the dataset's plan the run was set up from
                json.dump(self.setup.plan, f, indent=1)
            if self.budget is not None:  # which patients were labelled: the run folder says, not a seed to redraw
                with atomic_file(self.run_dir / "labelled.json") as f:
                    json.dump(self._labelled(), f, indent=1)
        distributed.barrier(self.ctx)

    def _labelled(self) -> dict:
        """The label budget as drawn: its spec, the labelled patients and cases (slices where slice-exact)."""
        patients = set(self.budget.patients)
        cases = sorted(c.id for c in self.dataset.split("train") if c.labeled and c.patient in patients)
        record = {"labeled": self.budget.spec, "seed": self.cfg.seed, "patients": list(self.budget.patients),
                  "cases": cases}
        if self.budget.slices is not None:
            record["slices"] = [f"{case}:{z}" for case, z in self.budget.slices]
        return record

    def banner(self) -> str:
        """What this run will do, said before it starts: a user sees a wrong device, budget or spacing
        at once, not after an hour."""
        cfg, store = self.cfg, self.store
        where = f"{self.ctx.device}" + (f" x{self.ctx.world}" if self.ctx.world > 1 else "")
        n = torch.get_num_threads()
        threads = f", {n} thread{'s' * (n != 1)}" if self.ctx.device.type == "cpu" else ""
        budget = f"{cfg.iterations} steps" + (f" or {cfg.time_budget:g} s" if cfg.time_budget else "")
        space = f"{cfg.spacing_mm:.3g} mm in-plane" if cfg.spacing_mm else "slices resized (no spacing)"
        lines = [f"{cfg.stage} {cfg.method} on {where}{threads}: {budget}, {space}, {cfg.input_size} px patches, "
                 f"seed {cfg.seed}" + (f", fold {cfg.fold}" if cfg.fold >= 0 else "")]
        if self.budget is not None:
            shown = ", ".join(self.budget.patients[:8]) + (", ..." if len(self.budget.patients) > 8 else "")
            lines.append(f"  labelled: {len(self.budget.patients)} patients ({shown}), {int(store.labeled.sum())} "
                         f"slices; unlabelled: {int((~store.labeled).sum())} slices; validation: "
                         f"{len(self.val_cases)} volumes" + ("" if self.val_cases else " (never validates)"))
        else:
            lines.append(f"  {len(store)} training slices, labels never read")
        lines.append(f"  run folder: {self.run_dir}")
        return "\n".join(lines)

    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)

    def _restore(self) -> None:
        """Continue from last.pt, or from last.prev.pt when last.pt cannot be read or applied (a field
        edited or damaged: a step that is not a number, an optimizer state that is not one); a
        checkpoint that fails either way is one line naming it, not a traceback."""
        last = self.run_dir / "checkpoints" / "last.pt"
        prev = last.with_suffix(".prev.pt")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            state = load_latest(self.run_dir, map_location="cpu")
        for w in seen:  # said again, now that we know whether it fell back to last.prev.pt
            warnings.warn(w.message, w.category, stacklevel=2)
        if state is None:
            return
        source = prev if any(str(prev) in str(w.message) for w in seen) else last
        try:
            self._apply_state(state, source)
        except DamagedCheckpoint as exc:
            if source == prev or not prev.exists():
                raise
            warnings.warn(f"{exc}; resuming from the previous checkpoint {prev}", stacklevel=2)
            self._apply_state(load_checkpoint(prev, map_location="cpu"), prev)
        if self.ctx.is_main:
            tqdm.write(f"resumed {self.run_dir} at step {self.step} ({self.elapsed:.0f} s trained)")

    def _apply_state(self, state: dict, path: Path) -> None:
        """Load weights, optimizer, scaler, sampler, random state and counters from a checkpoint's dict;
        any field that does not fit is DamagedCheckpoint(path, "damaged checkpoint: ...")."""
        try:
            load_weights(self.method, state, path, self.run_dir / "config.yaml")
            self.optimizer.load_state_dict(state["optimizer"])
            if state["scaler"] and self.scaler.is_enabled():  # a float32/bf16 checkpoint has no scaler state
                self.scaler.load_state_dict(state["scaler"])
            self.sampler.load_state_dict(state["sampler"])
            if len(state["rng"]) != self.ctx.world:
                raise IdealsegError(f"{self.run_dir}: checkpoint was written by {len(state['rng'])} process(es); "
                                    f"resume it with the same number (now {self.ctx.world})")
            torch.set_rng_state(state["rng"][self.ctx.rank])
            if torch.cuda.is_available() and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"])
            step, elapsed, best = state["step"], state["elapsed"], state["best"]
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise DamagedCheckpoint(path, f"damaged checkpoint: step {step!r:.40} is not a whole number >= 0")
            for name, value in (("elapsed", elapsed), ("best", best)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise DamagedCheckpoint(path, f"damaged checkpoint: {name} {value!r:.40} is not a finite number")
        except IdealsegError:
            raise
        except Exception as exc:  # a field of the wrong type or shape: torch's TypeError, KeyError, ...
            why = str(exc).splitlines()[0][:120] if str(exc) else ""
            raise DamagedCheckpoint(path, f"damaged checkpoint: {type(exc).__name__}" + (f" ({why})" if why else "")) \
                from None
        self.step, self.elapsed, self.best = step, float(elapsed), float(best)

    # -- the loop -------------------------------------------------------------------------------
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

    def _log(self, bar: tqdm, losses: dict[str, float] | None, lr: float) -> None:
        """The bar on rank 0 every step; a log row (log.csv, TensorBoard) on log steps (`losses` given)."""
        if self.ctx.is_main:
            self._update_bar(bar, losses)
        if losses is not None:
            row = {"step": self.step, "time": round(self.elapsed, 2), "lr": lr}
            row.update({k: round(v, 5) for k, v in losses.items()})
            self._log_rows.append(row)

    def _checkpoint(self) -> None:
        """Flush the log, then save: a resume from this checkpoint finds every row up to its step."""
        self._flush_log(self._log_rows)
        self.save()
        self._last_ckpt = self.step
        if time.monotonic() - self._figure_drawn > PROGRESS_FIGURE_SECONDS:
            self._draw_progress()

    def _draw_progress(self) -> None:
        """RUN/progress.png, the curves so far (nnU-Net's progress.png), redrawn at a checkpoint at most
        once a minute and when the run ends: its drawing stays out of the time budget."""
        self._figure_drawn = time.monotonic()
        if not self.ctx.is_main or not (self.run_dir / "log.csv").exists():
            return
        from idealseg.evaluation.figures import training_curves

        self._record("progress.png")
        training_curves(self.run_dir / "log.csv", self.run_dir / "progress.png", f"{self.cfg.stage} {self.cfg.method}")

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
        start = self.__dict__.setdefault("_eta_from", (self.step, self.elapsed))
        steps = self.step - start[0]
        if self.__dict__.get("_eta_said") or steps < min(ETA_AFTER_STEPS, self.cfg.iterations - start[0]):
            return
        self._eta_said = True
        if not self.ctx.is_main or steps <= 0:
            return
        rate = (self.elapsed - start[1]) / steps
        left = self.cfg.iterations - self.step
        tqdm.write(f"{rate:.3g} s a step on this machine ({cpu_model()}): the {left} steps left take about "
                   f"{_duration(rate * left)} (plus validation)")

    # -- validation, logging, checkpoints ----------------------------------------------------------
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
            scores.append(_mean_present(per_class[-1]))
            cleaned.append(mean_foreground_dice(largest_components(mask, n), case.label, n))
        classes = self.cfg.classes[1:] if len(self.cfg.classes) == n else [f"class{c}" for c in range(1, n)]
        by_class = {f"val_dice_{name}": round(_mean_present(v), 5) for name, v in zip(classes, np.transpose(per_class),
                                                                                      strict=True)}
        self._say_absent(np.isnan(per_class).sum())
        quality = self.pseudo_label_quality()
        self.method.train()
        self.last_val, self.last_val_cleaned = _mean_present(scores), _mean_present(cleaned)
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

    def _tensorboard(self):
        """A TensorBoard writer into RUN/tensorboard where `tensorboard` is installed (else None): the
        same rows as log.csv, for those who follow runs there."""
        if not self.ctx.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        # event files are named by time, host, process id and a count: this process's, whatever the time
        mine = f"tensorboard/events.out.tfevents.*.{glob.escape(socket.gethostname())}.{os.getpid()}.*"
        record_written(self.run_dir, [], [mine])
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None)

    def _flush_log(self, rows: list[dict]) -> None:
        if not self.ctx.is_main or not rows:
            rows.clear()
            return
        if self.board is not None:
            for row in rows:
                for key, value in row.items():
                    if key not in ("step", "time") and value not in ("", None):
                        self.board.add_scalar(f"{self.cfg.stage}/{key}", float(value), row["step"])
            self.board.flush()
        path = self.run_dir / "log.csv"
        self._record("log.csv")
        old = []
        if path.exists():  # rows past the step this process started from are the steps a resume redoes,
            with open(path, newline="") as f:  # and a row of the same step and kind is one it writes again
                redone = {_kind(r) for r in rows}
                old = [r for r in csv.DictReader(f) if _step(r) <= self._log_kept and _kind(r) not in redone]
        self._log_kept = max(self._log_kept, rows[-1]["step"])  # what this process wrote stays
        keys: list[str] = []
        for r in old + rows:
            keys += [k for k in r if k not in keys]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(old + rows)
        rows.clear()

    def _record(self, *names: str) -> None:
        """Note in the run's manifest the files this run is about to write (paths inside the run folder),
        so that an --overwrite later deletes them and never a user's file that merely has one of their
        names; before the write, so that a kill between the two leaves no file of ours unclaimed."""
        new = set(names) - self._recorded
        if self.ctx.is_main and new:  # once a name: log.csv is written at every log step
            record_written(self.run_dir, [self.run_dir / n for n in sorted(new)])
            self._recorded |= new

    def save(self) -> None:
        """Checkpoint everything a resume needs (model, optimiser, scaler, sampler, every rank's RNG)."""
        rng = distributed.gather_objects(self.ctx, torch.get_rng_state())  # every rank's augmentation stream
        if not self.ctx.is_main:
            return
        state = {
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": rng,
            "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "step": self.step,
            "elapsed": self.elapsed,
            "best": self.best,
            "config": self.cfg.to_dict(),
        }
        self._record(*(("encoder.pt",) if self.cfg.stage == "pretrain" else ()), "checkpoints/last.pt",
                     "checkpoints/last.prev.pt", "config.yaml")
        if self.cfg.stage == "pretrain":  # before last.pt: a kill between the two then redoes these steps
            save_checkpoint({"encoder": encoder_state(self.method), "config": self.cfg.to_dict()},
                            self.run_dir / "encoder.pt", keep_previous=False)
        save_checkpoint(state, self.run_dir / "checkpoints" / "last.pt")
        self.cfg.save(self.run_dir / "config.yaml")


def _step(row: dict) -> float:
    """A log row's step (an unreadable one: infinite, so that it is dropped as a row to redo)."""
    try:
        return int(row["step"])
    except (TypeError, ValueError, KeyError):
        return float("inf")


def _kind(row: dict) -> tuple[str, frozenset[str]]:
    """A log row's step and which columns it fills (a training row's losses, a validation's Dice)."""
    return str(row.get("step")), frozenset(k for k, v in row.items() if k != "time" and v not in ("", None))
