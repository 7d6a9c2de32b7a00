"""The one exception type users see: the CLI prints its message on one line and exits 2."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # the CLI imports this before it can take Ctrl-C: nothing slow at import
    from pathlib import Path


class IdealsegError(Exception):
    """A problem with the user's input or environment, stated so they can fix it."""


class InputError(IdealsegError):
    """A file the user gave us is unusable; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
