"""Signals, in one place: Ctrl-C and SIGTERM while a command runs, Ctrl-C held while HDF5 runs, the
file-size limit, and a torchrun worker's death with its launcher.

The command line imports this before it can take Ctrl-C: only modules Python has loaded already.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _bar_open() -> bool:
    tqdm = sys.modules.get("tqdm")
    return bool(getattr(getattr(tqdm, "tqdm", None), "_instances", ()))


class CommandSignals:
    """Ctrl-C (SIGINT) and SIGTERM while a command runs: a KeyboardInterrupt, so that every clean-up
    `finally` runs (a half-written output and its lock are removed), then "interrupted" and exit
    128 + the signal (130, 143). `prepare` holds SIGINT to the next case (`deferred_interrupt`);
    SIGTERM goes through whatever SIGINT's handler is then, and is held the same way. A signal
    ignored when the command starts (Ctrl-C in a background job) stays ignored.

    Once the command has ended (it printed its result or its error), a signal ends the process at
    once with the same line and code: an interrupt during the report or interpreter shutdown raises
    where nothing can catch it. That only when main() owns the process (argv from the command line);
    called with argv, from Python, the caller's handlers are put back instead."""

    def __init__(self, owner: bool) -> None:
        self.owner, self.received, self.previous, self.file_size = owner, signal.SIGINT, {}, None
        if not _in_main_thread():
            return
        if hasattr(signal, "SIGXFSZ"):
            # a write past the file-size limit (ulimit -f) then fails as an OSError (EFBIG) that names its
            # file in one line, instead of the signal killing the process inside HDF5 or zlib
            self.file_size = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if previous is None or previous == signal.SIG_IGN:
                continue
            self.previous[sig] = previous
            signal.signal(sig, self._raise)

    def _raise(self, signum: int, frame) -> None:
        self.received = signum
        held = signal.getsignal(signal.SIGINT)
        if signum != signal.SIGINT and callable(held) and held != self._raise:
            held(signal.SIGINT, frame)  # prepare's hold: taken at the next case, or raises
            return
        raise KeyboardInterrupt

    def _exit(self, signum: int, frame) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.write(2, b"\ninterrupted\n" if _bar_open() else b"interrupted\n")
        os._exit(128 + signum)

    def code(self) -> int:
        """The exit code of an interrupted command: 128 + the signal, as shells report it (130, 143)."""
        return 128 + self.received

    def ended(self) -> None:
        """The command has ended: from here a signal exits at once (or the caller's handlers are back)."""
        for sig, previous in self.previous.items():
            signal.signal(sig, self._exit if self.owner else previous)

    def restore(self) -> None:
        """Called from Python: the caller's handlers back, however main() ended."""
        if self.owner:
            return
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        if self.file_size is not None:
            signal.signal(signal.SIGXFSZ, self.file_size)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], None]]:
    """Hold Ctrl-C (SIGINT) until the caller's `check()`, called where an interrupt is safe.

    Python raises KeyboardInterrupt wherever the main thread is when the signal arrives; inside a
    weakref callback or finalizer (h5py runs them as it closes objects) it is printed and ignored,
    and the import carried on to "wrote". Here the signal only sets a flag; `check()` raises it at
    the next case, and so does leaving the block. A second Ctrl-C interrupts at once. Outside the
    main thread, or where SIGINT is ignored (a background job), nothing changes."""
    received: list[int] = []

    def check() -> None:
        if received:
            raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT) if _in_main_thread() else None
    if previous is None or previous == signal.SIG_IGN:
        yield check
        return

    def hold(signum: int, frame) -> None:
        received.append(signum)
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, hold)
    try:
        yield check
    except Exception:
        check()  # an error that followed Ctrl-C is not what the user asked about
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    check()


def exit_with_launcher() -> None:
    """Be killed when the process that started this one dies (Linux; a no-op elsewhere).

    torchrun starts each worker in a session of its own, so a Ctrl-C reaches only torchrun, and a
    torchrun killed before it has stopped its workers (kill -9, a second Ctrl-C while it waits for
    them) leaves them running, waiting forever in a collective for a peer that is gone. Only under
    torchrun (which stays until its workers end): another launcher may start them and go."""
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)
