"""The target contract: run commands, stream their output, move files, read sysfs.

A target is the *transport* to the machine that runs the model (devlib's split: the
target moves bytes; sensors and the worker decide what to read and run). Commands are
always given as argument lists and quoted by the target (``shlex.join`` for POSIX
shells), never as strings built by concatenation, so a model file named
``a b;rm -rf x.gguf`` is one argument and runs nothing else.

Implementations: :class:`meltbench.targets.local.LocalTarget`,
:class:`meltbench.targets.ssh.SshTarget` (paramiko),
:class:`meltbench.targets.adb.AdbTarget` (adbutils). Targets are named by URL
(``local``, ``ssh://user@host:port``, ``adb://SERIAL``) or by a name in the targets file
(:mod:`meltbench.targets.config`).
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Completed", "RemoteProcess", "Target", "TargetError", "quote"]


class TargetError(RuntimeError):
    """The target could not be reached or stopped answering (a disconnect, a refused
    host key, a timeout). The message is one line saying what happened and what to do."""


def quote(argv: Sequence[str]) -> str:
    """A POSIX shell command line for ``argv``, every argument quoted (``shlex.join``)."""
    return shlex.join([str(a) for a in argv])


@dataclass
class Completed:
    """A finished command: exit status and its whole output (text)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True if the command exited 0."""
        return self.returncode == 0


class RemoteProcess(ABC):
    """A running command on a target, streamed line by line.

    ``stdin`` accepts text (:meth:`write`, :meth:`close_stdin`); :meth:`lines` yields
    stdout lines as they arrive (without the newline) and ends at EOF; :meth:`wait`
    returns the exit status; :meth:`kill` stops it (and, over SSH, closes the channel).
    """

    @abstractmethod
    def write(self, text: str) -> None:
        """Send ``text`` to the command's stdin."""

    @abstractmethod
    def close_stdin(self) -> None:
        """Close the command's stdin (EOF)."""

    @abstractmethod
    def lines(self) -> Iterator[str]:
        """stdout lines as they arrive; raises :class:`TargetError` on a disconnect."""

    @abstractmethod
    def stderr_tail(self) -> list[str]:
        """The last lines the command wrote to stderr."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> int:
        """Exit status (negative = killed by that signal, where known)."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the command now."""


@dataclass
class Target(ABC):
    """A machine meltbench can run on.

    Attributes:
        url: how it was named (``local``, ``ssh://pi@10.0.0.5``, ``adb://R58M...``).
        workdir: the meltbench-owned directory on the target where files are pushed
            (``~/.cache/meltbench-target`` over SSH, ``/data/local/tmp/meltbench`` on
            Android); :meth:`cleanup` removes it.
        python: the interpreter that runs meltbench's worker there (None: no Python,
            e.g. Android without Termux).
    """

    url: str
    workdir: str = ""
    python: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    kind: str = "local"

    @abstractmethod
    def run(
        self, argv: Sequence[str], *, timeout: float | None = 60.0, input: str | None = None
    ) -> Completed:
        """Run ``argv`` (quoted) and wait for it.

        Raises:
            TargetError: unreachable, disconnected, or ``timeout`` seconds passed.
        """

    @abstractmethod
    def start(self, argv: Sequence[str]) -> RemoteProcess:
        """Start ``argv`` (quoted) and stream it.

        Raises:
            TargetError: unreachable or disconnected.
        """

    @abstractmethod
    def push(self, local: str, remote: str) -> None:
        """Copy the local file ``local`` to ``remote`` on the target (parents created)."""

    @abstractmethod
    def pull(self, remote: str, local: str) -> None:
        """Copy ``remote`` from the target to the local file ``local``."""

    def read_file(self, path: str) -> str | None:
        """Text of ``path`` on the target, stripped; None if it does not exist."""
        done = self.run(["cat", path], timeout=30)
        return done.stdout.strip() if done.ok else None

    def describe(self) -> dict[str, Any]:
        """Facts about the target (OS, kernel, arch, CPU, memory, Python), JSON-ready."""
        return {"url": self.url, "kind": self.kind, **self.facts}

    def cleanup(self) -> None:
        """Remove :attr:`workdir` and everything meltbench pushed there."""
        if self.workdir:
            self.run(["rm", "-rf", self.workdir], timeout=120)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close the connection."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
