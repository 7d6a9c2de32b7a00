"""Checkpoints and resume, a part of the Trainer: what a checkpoint holds, and the one rule for
resuming: last.pt, else last.prev.pt where last.pt cannot be read or its fields do not fit."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from idealseg.engine import distributed
from idealseg.engine.run_log import PROGRESS_FIGURE_SECONDS
from idealseg.errors import IdealsegError, InputError
from idealseg.runfolder.checkpoint import latest_paths, load_checkpoint, save_checkpoint
from idealseg.runfolder.folder import encoder_state
from idealseg.runfolder.weights import load_weights


class DamagedCheckpoint(InputError):
    """A checkpoint that loads but whose fields do not fit (edited, or written by something else)."""


class Checkpointing:
    """The Trainer's checkpoints (engine/trainer.py holds the state: method, optimizer, scaler, sampler,
    step, elapsed, best)."""

    def _checkpoint(self) -> None:
        """Flush the log, then save: a resume from this checkpoint finds every row up to its step."""
        self._flush_log(self._log_rows)
        self.save()
        self._last_ckpt = self.step
        if time.monotonic() - self._figure_drawn > PROGRESS_FIGURE_SECONDS:
            self._draw_progress()

    def _restore(self) -> None:
        """Continue from last.pt or, where last.pt cannot be read or applied (truncated by a kill, a field
        edited or damaged: a step that is not a number, an optimizer state that is not one), from
        last.prev.pt, saying so; a checkpoint that fails either way is one line naming it."""
        last, prev = latest_paths(self.run_dir)
        candidates = [p for p in (last, prev) if p.exists()]
        for i, path in enumerate(candidates):
            try:
                self._apply_state(load_checkpoint(path, map_location="cpu"), path)
            except InputError as exc:  # unreadable (load_checkpoint) or not fitting (DamagedCheckpoint)
                if i + 1 == len(candidates):
                    raise
                warnings.warn(f"{exc}; resuming from the previous checkpoint {candidates[i + 1]}", stacklevel=2)
                continue
            break
        if candidates and self.ctx.is_main:
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
