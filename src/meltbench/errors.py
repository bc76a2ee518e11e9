"""Exceptions with a meaning for the user.

``UsageError`` is bad input: the CLI prints its one-line message and exits with code 2,
and nothing is stored. ``RunFailed`` is a benchmark that started and then failed (the
worker crashed, was killed, or timed out): it is stored as a failed run.
"""

from __future__ import annotations

__all__ = ["MeltbenchError", "RunFailed", "RunInterrupted", "UsageError"]


class MeltbenchError(Exception):
    """Base class of meltbench's own errors."""


class UsageError(MeltbenchError):
    """Bad input. The message is one line: what is wrong and how to fix it."""


class RunFailed(MeltbenchError):
    """A run that started but did not complete; ``cause`` says why, in one line."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run. The interrupted run was stored as failed: see ``result``."""

    def __init__(self, result: object) -> None:
        super().__init__("interrupted")
        self.result = result
