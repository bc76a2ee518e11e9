"""A read-only view of a sysfs/procfs tree under a root directory.

Every sensor reads through a :class:`SysFS`, never through absolute paths, so the same
code reads the live machine (root ``/``), a recorded fixture tree in the tests
(``tests/fixtures/sysfs/...``), or a remote device's files through a target. Paths are
given relative to the root, e.g. ``"sys/class/powercap"``.

Repeated reads of one attribute use :meth:`SysFS.reader`: the file is opened once and
re-read with ``pread`` at offset 0, which makes sysfs/procfs regenerate the value
(kernfs/seq_file semantics), at about a microsecond a read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["SysFS"]


class SysFS:
    """Files under ``root`` (default ``/``), read as text.

    Args:
        root: directory that plays the role of ``/``.

    Missing files read as None; other errors (``PermissionError`` for RAPL's
    ``energy_uj`` on kernels >= 5.10, ``OSError`` for an attribute the driver cannot
    read right now) propagate, so probes can say exactly why a sensor is unusable.
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"SysFS({str(self.root)!r})"

    def path(self, rel: str) -> Path:
        """The real path of ``rel`` (relative to the root; a leading ``/`` is ignored)."""
        return self.root / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        """True if ``rel`` exists under the root."""
        return self.path(rel).exists()

    def listdir(self, rel: str) -> list[str]:
        """Sorted entry names of directory ``rel``; ``[]`` if it does not exist."""
        try:
            return sorted(os.listdir(self.path(rel)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read_text(self, rel: str) -> str | None:
        """The stripped text of file ``rel``; None if it does not exist.

        Raises:
            PermissionError: the file exists but may not be read.
            OSError: any other read error.
        """
        try:
            with open(self.path(rel), encoding="utf-8", errors="replace") as fh:
                return fh.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_int(self, rel: str) -> int | None:
        """File ``rel`` as an integer; None if missing or not an integer.

        Raises:
            PermissionError, OSError: as :meth:`read_text`.
        """
        text = self.read_text(rel)
        if text is None:
            return None
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            return None

    def reader(self, rel: str) -> tuple[Callable[[], str], Callable[[], None]]:
        """A fast repeated reader ``read() -> text`` of file ``rel`` and its ``close()``.

        Raises:
            FileNotFoundError, PermissionError, OSError: when the file cannot be opened.
        """
        fd = os.open(self.path(rel), os.O_RDONLY)

        def read() -> str:
            return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()

        return read, lambda: os.close(fd)
