"""One process on an Android device over adb's shell v2 protocol: PID, streams, exit, kill."""

from __future__ import annotations

import contextlib
import posixpath
import queue
import re
import struct
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from adbutils import AdbConnection

from meltbench.targets.base import RemoteProcess, TargetError

if TYPE_CHECKING:
    from meltbench.targets.adb import AdbTarget

__all__ = ["AdbProcess"]

#: adb shell v2 packet ids (adb's shell_protocol.h)
_ID_STDIN, _ID_STDOUT, _ID_STDERR, _ID_EXIT, _ID_CLOSE_STDIN = 0, 1, 2, 3, 4


_PID_MARK = "__meltbench_pid="


_PID_RE = re.compile(re.escape(_PID_MARK) + r"(\d+)")


_EXIT_MARK = "__meltbench_exit="


def _label(argv: Sequence[str]) -> str:
    """The program's name for messages (``env VAR=x /path/llama-bench ...`` -> llama-bench)."""
    args = list(argv)
    if args and args[0] == "env":
        args = [a for a in args[1:] if "=" not in a] or args
    return posixpath.basename(str(args[0])) if args else "?"


def _disconnected(what: str, exc: BaseException | str) -> TargetError:
    detail = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    return TargetError(f"device disconnected: {what}: {detail}")


class _ShellV2:
    """One ``shell,v2`` connection: reads packets, sends stdin."""

    def __init__(self, conn: AdbConnection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        self._pending = b""

    def read_packet(self) -> tuple[int, bytes] | None:
        """``(id, data)``, or None at EOF. Raises ``TimeoutError`` (the bytes read so far
        are kept for the next call, so a timeout never splits a packet) or ``OSError``."""
        header = self._read_exact(5)
        if header is None:
            return None
        length = struct.unpack("<I", header[1:5])[0]
        data = self._read_exact(5 + length) if length else header
        if data is None:
            return None
        self._pending = b""
        return header[0], data[5:]

    def _read_exact(self, n: int) -> bytes | None:
        """The first ``n`` bytes of the current packet (read into ``_pending``)."""
        sock = self.conn.conn
        while len(self._pending) < n:
            chunk = sock.recv(n - len(self._pending))
            if not chunk:
                return None
            self._pending += chunk
        return self._pending[:n]

    def send(self, packet_id: int, data: bytes = b"") -> None:
        with self._send_lock:
            self.conn.conn.sendall(struct.pack("<BI", packet_id, len(data)) + data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class AdbProcess(RemoteProcess):
    """A command running on the phone through ``shell,v2`` (see the module docstring).

    A reader thread takes the packets off the socket: stdout lines go to :meth:`lines`
    and to :attr:`stdout_lines` (all of them, so nothing printed is lost), stderr lines to
    :meth:`stderr_tail`. A connection that ends without an exit packet makes
    :meth:`lines`/:meth:`wait` raise ``TargetError("device disconnected: ...")``.
    """

    def __init__(self, target: AdbTarget, shell: _ShellV2, command: str, label: str) -> None:
        self._target = target
        self._shell = shell
        self.command = command
        self.label = label
        self.pid: int | None = None
        self.returncode: int | None = None
        self.error: TargetError | None = None
        self.stdout_lines: list[str] = []
        self._stderr: deque[str] = deque(maxlen=200)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._killed = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="adb-shell-reader", daemon=True)
        self._thread.start()

    # -- reader thread ---------------------------------------------------------------

    def _read(self) -> None:
        out_buf = b""
        err_buf = b""
        self._shell.conn.conn.settimeout(0.5)
        try:
            while True:
                try:
                    packet = self._shell.read_packet()
                except TimeoutError:
                    if self._killed:
                        break
                    continue
                if packet is None:
                    if not self._killed:
                        self.error = _disconnected(
                            f"the adb connection closed before {self.label} exited",
                            f"adb server at {self._target.host}:{self._target.port}, "
                            f"device {self._target.serial}",
                        )
                    break
                pid, data = packet
                if pid == _ID_STDOUT:
                    out_buf = self._lines_of(out_buf + data, self._stdout_line)
                elif pid == _ID_STDERR:
                    err_buf = self._lines_of(err_buf + data, self._stderr_line)
                elif pid == _ID_EXIT:
                    self.returncode = data[0] if data else 255
                    break
        except OSError as exc:
            if not self._killed:
                self.error = _disconnected(f"adb connection failed while {self.label} ran", exc)
        finally:
            if out_buf:
                self._stdout_line(out_buf)
            if err_buf:
                self._stderr_line(err_buf)
            self._shell.close()
            self._queue.put(None)
            self._done.set()

    @staticmethod
    def _lines_of(buf: bytes, emit: Any) -> bytes:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            emit(line)
        return buf

    def _stdout_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.stdout_lines.append(line)
        self._queue.put(line)

    def _stderr_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if self.pid is None:
            m = _PID_RE.fullmatch(line.strip())
            if m:
                self.pid = int(m.group(1))
                return
        self._stderr.append(line)

    # -- RemoteProcess ---------------------------------------------------------------

    def write(self, text: str) -> None:
        """Send ``text`` to the command's stdin.

        Raises:
            TargetError: the connection is gone.
        """
        try:
            self._shell.send(_ID_STDIN, text.encode("utf-8"))
        except OSError as exc:
            raise _disconnected("writing to the command's stdin", exc) from None

    def close_stdin(self) -> None:
        """Close the command's stdin (EOF); ignored when the connection is gone."""
        with contextlib.suppress(OSError):
            self._shell.send(_ID_CLOSE_STDIN)

    def lines(self) -> Iterator[str]:
        """stdout lines as they arrive.

        Raises:
            TargetError: the device disconnected before the command exited.
        """
        while True:
            line = self._queue.get()
            if line is None:
                if self.error is not None:
                    raise self.error
                return
            yield line

    def stderr_tail(self) -> list[str]:
        """The last (up to 200) stderr lines, without the pid line."""
        return list(self._stderr)

    def finished(self, timeout: float | None = None) -> bool:
        """True once the command ended (or its connection did), waiting up to ``timeout``
        seconds; never raises."""
        return self._done.wait(timeout)

    def wait(self, timeout: float | None = None) -> int:
        """Exit status of the command.

        Raises:
            TargetError: ``timed out`` after ``timeout`` seconds (the command keeps
                running: call :meth:`kill`), or ``device disconnected: ...``.
        """
        if not self._done.wait(timeout):
            raise TargetError(f"timed out after {timeout:g} s waiting for {self.label}")
        if self.error is not None:
            raise self.error
        if self.returncode is None:
            return -9 if self._killed else 255
        return self.returncode

    def kill(self) -> None:
        """``kill -9`` the command on the phone (by its pid, in a second shell) and close
        the connection; never raises."""
        if self._done.is_set():
            return
        self._killed = True
        if self.pid is not None:
            with contextlib.suppress(Exception):
                self._target.run(["kill", "-9", str(self.pid)], timeout=5.0)
        self._shell.close()
        self._done.wait(2.0)
