"""This machine as a target: commands run as subprocesses (no shell), files are copied.

The reference implementation of :class:`~meltbench.targets.base.Target`: what an SSH or
adb target does over the wire, this does with :mod:`subprocess` and :mod:`shutil`. A
command that does not exist gives exit status 127 (what a POSIX shell reports), so code
written against a remote target behaves the same here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meltbench.targets.base import Completed, RemoteProcess, Target, TargetError

if TYPE_CHECKING:
    from meltbench.targets.config import TargetSpec

__all__ = ["LocalProcess", "LocalTarget"]

#: default meltbench-owned directory of a target, on the target
DEFAULT_WORKDIR = "~/.cache/meltbench-target"


class LocalProcess(RemoteProcess):
    """A local subprocess streamed line by line (its own process group)."""

    def __init__(self, argv: Sequence[str]) -> None:
        try:
            self._proc = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise TargetError(f"cannot start {argv[0]!r} on this machine: {exc}") from None
        self.pid = self._proc.pid
        self._stderr: deque[str] = deque(maxlen=200)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in iter(self._proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
        self._proc.stderr.close()

    def write(self, text: str) -> None:
        """Send ``text`` to stdin.

        Raises:
            TargetError: the process has closed its stdin (it exited).
        """
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(text.encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise TargetError(f"process {self.pid} closed its stdin: {exc}") from None

    def close_stdin(self) -> None:
        """EOF on stdin."""
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()

    def lines(self) -> Iterator[str]:
        """stdout lines (no newline) until EOF."""
        assert self._proc.stdout is not None
        for raw in iter(self._proc.stdout.readline, b""):
            yield raw.decode("utf-8", errors="replace").rstrip("\n")

    def stderr_tail(self) -> list[str]:
        """The last (up to 200) stderr lines."""
        return list(self._stderr)

    def wait(self, timeout: float | None = None) -> int:
        """Exit status; negative = killed by that signal.

        Raises:
            TargetError: still running after ``timeout`` seconds.
        """
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TargetError(f"process {self.pid} still running after {timeout} s") from None
        self._drain.join(timeout=5)
        return code

    def send_signal(self, sig: int | str) -> bool:
        """Send ``sig`` (a number or a name such as ``"INT"``) to the process group; False
        if it already ended."""
        signum = sig if isinstance(sig, int) else signal.Signals[f"SIG{sig.upper()}"].value
        try:
            os.killpg(self._proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def kill(self) -> None:
        """SIGTERM to the process group, SIGKILL after 3 s."""
        if self._proc.poll() is not None:
            return
        self.send_signal(signal.SIGTERM.value)
        try:
            self._proc.wait(3)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL.value)
            self._proc.wait()


@dataclass
class LocalTarget(Target):
    """This machine.

    Attributes:
        venv: the venv used by :mod:`meltbench.targets.setup` (None = ``<workdir>/venv``);
            a local run normally uses the running interpreter directly.
    """

    kind: str = "local"
    venv: str | None = None

    @classmethod
    def from_spec(cls, spec: TargetSpec | None = None, connect: bool = True) -> LocalTarget:
        """A local target with the spec's ``workdir``/``python``/``venv`` (``~`` expanded);
        ``connect`` has nothing to do here."""
        workdir = os.path.expanduser((spec.workdir if spec else None) or DEFAULT_WORKDIR)
        venv = spec.venv if spec else None
        return cls(
            url="local",
            workdir=workdir,
            python=(spec.python if spec else None) or sys.executable,
            venv=os.path.expanduser(venv) if venv else None,
        )

    def run(
        self, argv: Sequence[str], *, timeout: float | None = 60.0, input: str | None = None
    ) -> Completed:
        """Run ``argv`` without a shell; 127 if the program does not exist.

        Raises:
            TargetError: ``timeout`` seconds passed (the process is killed).
        """
        try:
            done = subprocess.run(
                [str(a) for a in argv],
                input=input,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise TargetError(
                f"`{argv[0]}` timed out after {timeout:g} s on this machine"
            ) from None
        except (FileNotFoundError, NotADirectoryError):
            return Completed(127, "", f"{argv[0]}: command not found")
        except PermissionError as exc:
            return Completed(126, "", f"{argv[0]}: {exc.strerror}")
        return Completed(done.returncode, done.stdout, done.stderr)

    def start(self, argv: Sequence[str]) -> LocalProcess:
        """Start ``argv`` in its own process group.

        Raises:
            TargetError: it cannot be started (not found, not executable).
        """
        return LocalProcess(argv)

    def push(self, local: str, remote: str) -> None:
        """Copy ``local`` to ``remote`` (parents created; atomic rename).

        Raises:
            TargetError: the copy failed.
        """
        dest = Path(os.path.expanduser(remote))
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, tmp)
            tmp.replace(dest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise TargetError(f"cannot copy {local} to {remote}: {exc}") from None

    def pull(self, remote: str, local: str) -> None:
        """Copy ``remote`` to ``local`` (parents created).

        Raises:
            TargetError: the copy failed.
        """
        try:
            Path(local).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(os.path.expanduser(remote), local)
        except OSError as exc:
            raise TargetError(f"cannot copy {remote} to {local}: {exc}") from None

    def read_file(self, path: str) -> str | None:
        """Text of ``path``, stripped; None if unreadable."""
        try:
            return Path(path).read_text(errors="replace").strip()
        except OSError:
            return None

    def describe(self) -> dict[str, Any]:
        """``url``, ``kind``, ``workdir``, ``python`` and the collected facts."""
        return {
            "url": self.url,
            "kind": self.kind,
            "workdir": self.workdir,
            "python": self.python,
            **self.facts,
        }

    def cleanup(self) -> None:
        """Remove :attr:`workdir`."""
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
