"""sysfs/procfs of an Android phone, read through adb, as a :class:`SysFS`.

The sensors (:mod:`meltbench.sensors.battery`, ``thermal``, ``cpufreq``) and
:func:`meltbench.sensors.device_state.read_device_state` read through a :class:`SysFS`;
:class:`AdbSysFS` answers the same calls from the phone, so they work unchanged:

- ``read_text``/``read_int``: ``cat PATH`` over ``adb shell``; ``No such file or
  directory``/``Not a directory`` reads as None (like a missing file), ``Permission
  denied`` raises ``PermissionError`` (SELinux hides many sysfs files from the ``shell``
  user), anything else ``OSError``; a lost device raises ``OSError`` (``EIO``), so a
  sensor read gives None and the sampler goes on.
- ``listdir``: ``ls -1 PATH/``; ``exists``: ``ls -d PATH``.
- ``reader(path)``: checks the file once, then returns a ``read()`` that shares **one**
  shell command with every other open reader: the first read of a path whose last value
  was already used refreshes *all* open paths with one ``sh -c 'for f; do cat "$f"; ...'``.
  A sampler row (every sensor reading its files once) therefore costs one adb round trip
  (about 5-30 ms over USB) instead of one per file.

Readings are taken by the host: their timestamps are on the *host's* clock
(``perf_counter_ns`` around the adb round trip), not the phone's.
"""

from __future__ import annotations

import errno
import re
import threading
from collections.abc import Callable
from pathlib import Path

from meltbench.sensors.sysfs import SysFS
from meltbench.targets.base import Completed, Target, TargetError

__all__ = ["AdbSysFS"]

_END = "@@meltbench-end"
_END_RE = re.compile(r"\n" + _END + r" (\d+)\n")
#: one command reading many files: each file's text, then a line ``@@meltbench-end RC``
_BATCH_SCRIPT = f'for f; do cat "$f" 2>/dev/null; printf \'\\n{_END} %d\\n\' "$?"; done'
_MISSING = ("No such file or directory", "Not a directory")


class AdbSysFS(SysFS):
    """The phone's files under ``/`` through ``target`` (an
    :class:`~meltbench.targets.adb.AdbTarget`, or any :class:`Target`).

    Args:
        target: the device.
        timeout: seconds one read may take before it fails (``OSError``).
    """

    def __init__(self, target: Target, timeout: float = 10.0) -> None:
        super().__init__("/")
        self.target = target
        self.timeout = timeout
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._values: dict[str, str | OSError] = {}
        self._used: set[str] = set()
        #: shell commands run so far (for tests and the overhead note)
        self.commands = 0

    def __repr__(self) -> str:
        return f"AdbSysFS({self.target.url!r})"

    def path(self, rel: str) -> Path:
        """The absolute path on the phone of ``rel``."""
        return Path("/" + rel.lstrip("/"))

    def _abs(self, rel: str) -> str:
        return "/" + rel.lstrip("/")

    def _run(self, argv: list[str]) -> Completed:
        self.commands += 1
        try:
            return self.target.run(argv, timeout=self.timeout)
        except TargetError as exc:
            raise OSError(errno.EIO, str(exc)) from None

    @staticmethod
    def _error(path: str, stderr: str) -> OSError | None:
        """None for "missing", else the exception matching ``stderr``."""
        if any(m in stderr for m in _MISSING):
            return None
        if "Permission denied" in stderr:
            return PermissionError(errno.EACCES, "Permission denied", path)
        if "Is a directory" in stderr:
            return IsADirectoryError(errno.EISDIR, "Is a directory", path)
        return OSError(errno.EIO, stderr.strip() or "read failed", path)

    def exists(self, rel: str) -> bool:
        """True if ``rel`` exists on the phone (``ls -d``)."""
        try:
            return self._run(["ls", "-d", self._abs(rel)]).ok
        except OSError:
            return False

    def listdir(self, rel: str) -> list[str]:
        """Sorted names in directory ``rel``; ``[]`` if missing or not a directory.

        Raises:
            PermissionError: the directory may not be listed.
            OSError: the device is gone.
        """
        path = self._abs(rel).rstrip("/") + "/"
        done = self._run(["ls", "-1", path])
        if not done.ok:
            err = self._error(path, done.stderr + done.stdout)
            if err is None:
                return []
            raise err
        return sorted(n for n in done.stdout.splitlines() if n and n not in (".", ".."))

    def read_text(self, rel: str) -> str | None:
        """Stripped text of ``rel``; None if it does not exist.

        Raises:
            PermissionError, OSError: as described in the module docstring.
        """
        path = self._abs(rel)
        done = self._run(["cat", path])
        if done.ok:
            return done.stdout.strip()
        err = self._error(path, done.stderr + done.stdout)
        if err is None:
            return None
        raise err

    # -- batched repeated reads ----------------------------------------------------

    def _refresh(self) -> None:
        """Read every open path with one shell command (lock held)."""
        paths = list(self._open)
        try:
            done = self._run(["sh", "-c", _BATCH_SCRIPT, "sh", *paths])
        except OSError as exc:
            self._values = dict.fromkeys(paths, exc)
            self._used = set()
            return
        parts = _END_RE.split("\n" + done.stdout + "\n") if done.stdout else []
        values: dict[str, str | OSError] = {}
        # parts: [text0, rc0, text1, rc1, ..., tail]; text0 starts with the added "\n"
        for i, path in enumerate(paths):
            if 2 * i + 1 >= len(parts):
                values[path] = OSError(errno.EIO, "no value in the batched read", path)
                continue
            text, rc = parts[2 * i], parts[2 * i + 1]
            if rc != "0":
                values[path] = OSError(errno.EIO, f"cat exited {rc}", path)
            else:
                values[path] = text.strip()
        self._values = values
        self._used = set()

    def _read_open(self, path: str) -> str:
        with self._lock:
            if path in self._used or path not in self._values:
                self._refresh()
            self._used.add(path)
            value = self._values.get(path)
        if isinstance(value, OSError):
            raise value
        if value is None:
            raise OSError(errno.EIO, "closed reader", path)
        return value

    def reader(self, rel: str) -> tuple[Callable[[], str], Callable[[], None]]:
        """A repeated reader of ``rel`` and its ``close()`` (see the module docstring).

        Raises:
            FileNotFoundError: ``rel`` does not exist.
            PermissionError, OSError: it cannot be read.
        """
        path = self._abs(rel)
        first = self.read_text(rel)
        if first is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        with self._lock:
            self._open[path] = self._open.get(path, 0) + 1
            self._values[path] = first
            self._used.discard(path)

        def read() -> str:
            return self._read_open(path)

        def close() -> None:
            with self._lock:
                count = self._open.get(path, 0) - 1
                if count <= 0:
                    self._open.pop(path, None)
                    self._values.pop(path, None)
                    self._used.discard(path)
                else:
                    self._open[path] = count

        return read, close
