"""The one trainer shared by every method (pre-training and fine-tuning alike), in named parts.

It owns devices, AMP, DDP, the learning-rate schedule, budgets, progress, logging, validation,
checkpoints and resume; methods own only their step. This file builds a run (inputs checked, then
the folder written, the data, the method, the optimiser); its parts live beside it: the loop
(engine/loop.py), validation (engine/validation.py), log.csv and the other records
(engine/run_log.py), checkpoints and resume (engine/checkpointing.py).
"""

from __future__ import annotations

import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from idealseg.atomic import atomic_file
from idealseg.config import RunConfig
from idealseg.data.slice_store import BatchSampler, SliceStore
from idealseg.engine import distributed
from idealseg.engine.checkpointing import Checkpointing
from idealseg.engine.compiled import compile_mode, compile_networks, fused
from idealseg.engine.loop import Loop
from idealseg.engine.run_log import RunLog
from idealseg.engine.run_setup import RunSetup, setup_run
from idealseg.engine.validation import Validation
from idealseg.errors import IdealsegError
from idealseg.methods import get_method
from idealseg.ownership import check_no_overlap, replace_folder, write_manifest
from idealseg.precision import autocast_dtype
from idealseg.runfolder.environment import write_environment
from idealseg.runfolder.folder import load_pretrained


class Trainer(Loop, Validation, RunLog, Checkpointing):
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
            write_manifest(self.run_dir, "run")
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
