"""A run's records as it trains, a part of the Trainer: log.csv (rows a resume redoes replaced, the
rest kept), TensorBoard, progress.png and the manifest of the files the run writes."""

from __future__ import annotations

import csv
import glob
import os
import socket
import time

from tqdm import tqdm

from idealseg.atomic import atomic_path
from idealseg.ownership import record_written

PROGRESS_FIGURE_SECONDS = 60  # progress.png is redrawn at most this often (a draw costs about 0.3 s)


class RunLog:
    """The Trainer's logging (engine/trainer.py holds the state: run_dir, cfg, ctx, board)."""

    def _log(self, bar: tqdm, losses: dict[str, float] | None, lr: float) -> None:
        """The bar on rank 0 every step; a log row (log.csv, TensorBoard) on log steps (`losses` given)."""
        if self.ctx.is_main:
            self._update_bar(bar, losses)
        if losses is not None:
            row = {"step": self.step, "time": round(self.elapsed, 2), "lr": lr}
            row.update({k: round(v, 5) for k, v in losses.items()})
            self._log_rows.append(row)

    def _draw_progress(self) -> None:
        """RUN/progress.png, the curves so far (nnU-Net's progress.png), redrawn at a checkpoint at most
        once a minute and when the run ends: its drawing stays out of the time budget."""
        self._figure_drawn = time.monotonic()
        if not self.ctx.is_main or not (self.run_dir / "log.csv").exists():
            return
        from idealseg.evaluation.figures import training_curves

        self._record("progress.png")
        training_curves(self.run_dir / "log.csv", self.run_dir / "progress.png", f"{self.cfg.stage} {self.cfg.method}")

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


def _step(row: dict) -> float:
    """A log row's step (an unreadable one: infinite, so that it is dropped as a row to redo)."""
    try:
        return int(row["step"])
    except (TypeError, ValueError, KeyError):
        return float("inf")


def _kind(row: dict) -> tuple[str, frozenset[str]]:
    """A log row's step and which columns it fills (a training row's losses, a validation's Dice)."""
    return str(row.get("step")), frozenset(k for k, v in row.items() if k != "time" and v not in ("", None))
