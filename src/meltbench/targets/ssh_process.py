"""SSH plumbing under :class:`meltbench.targets.ssh.SshTarget`: host keys, the socket,
and one remote process with its PID, streams, exit status and kill."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meltbench.errors import UsageError
from meltbench.targets.base import RemoteProcess, TargetError

if TYPE_CHECKING:
    pass


try:
    import paramiko
except ImportError:  # pragma: no cover - paramiko is in the "remote" extra
    paramiko = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from meltbench.targets.ssh import SshTarget

__all__ = ["HostKeyError", "SshProcess", "fingerprint"]

TCP_USER_TIMEOUT_MS = 30_000
_POLL_S = 0.25
_PID_RE = re.compile(rb"^MELTBENCH-PID (\d+)$")


class HostKeyError(TargetError):
    """The device's host key is unknown (and accepting new keys was not asked for) or
    differs from the recorded one."""


def fingerprint(key: Any) -> str:
    """OpenSSH-style fingerprint of a paramiko key: ``SHA256:<base64, no padding>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _need_paramiko() -> None:
    if paramiko is None:
        raise UsageError("ssh targets need paramiko; install it: pip install 'meltbench[remote]'")


def _host_key_name(host: str, port: int) -> str:
    """The known_hosts name paramiko and OpenSSH use: ``host`` or ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _make_policy(known_hosts: str, accept_new: bool, url: str) -> Any:
    """A paramiko MissingHostKeyPolicy: refuse (default) or accept-and-record."""

    class _Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            kind, fp = key.get_name(), fingerprint(key)
            if not accept_new:
                raise HostKeyError(
                    f"host key of {url} ({kind} {fp}) is not in {known_hosts}; check the "
                    "fingerprint on the device (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) "
                    "and accept it with `accept_new_host_key: true` in the targets file or "
                    "--accept-new-host-key"
                )
            path = Path(known_hosts)
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                new = not path.exists()
                with open(path, "a") as fh:
                    fh.write(f"{hostname} {kind} {key.get_base64()}\n")
                if new:
                    os.chmod(path, 0o600)
            except OSError as exc:
                raise HostKeyError(
                    f"cannot record the host key of {url} in {known_hosts}: {exc.strerror}"
                ) from None
            client.get_host_keys().add(hostname, kind, key)

    return _Policy()


def _install_exit_signal_handler(transport: Any) -> None:
    """Record ``exit-signal`` (which paramiko ignores) as ``exit_status = -signum``.

    Best effort: if paramiko's internals differ, exit statuses of killed commands stay -1.
    """
    try:
        from paramiko.common import MSG_CHANNEL_REQUEST

        table = dict(type(transport)._channel_handler_table)
        original = table[MSG_CHANNEL_REQUEST]

        def handle(chan: Any, m: Any) -> None:
            pos = m.packet.tell()
            try:
                key = m.get_text()
            except Exception:
                key = ""
            if key != "exit-signal":
                m.packet.seek(pos)
                original(chan, m)
                return
            m.get_boolean()  # want_reply (false for exit-signal, RFC 4254 6.10)
            name = m.get_text()
            try:
                num = signal.Signals[f"SIG{name}"].value
            except KeyError:
                num = 0
            chan.exit_status = -num if num else -1
            chan.exit_signal = name
            chan.status_event.set()

        table[MSG_CHANNEL_REQUEST] = handle
        transport._channel_handler_table = table
    except Exception:  # pragma: no cover - defensive
        return


def _tune_socket(sock: socket.socket) -> None:
    """TCP keepalive and a user timeout, so a dead peer breaks the connection (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class SshProcess(RemoteProcess):
    """A command on the device, streamed over one SSH channel.

    Attributes:
        pid: the remote process id (None until it reported it).
        killed: :meth:`kill` was called (the stream then ends without an error).
    """

    def __init__(self, target: SshTarget, chan: Any, argv: Sequence[str], keep_stderr: bool):
        self._target = target
        self._chan = chan
        self._argv0 = str(argv[0]) if argv else "?"
        self.pid: int | None = None
        self.killed = False
        self._pid_event = threading.Event()
        self._stderr: deque[str] = deque(maxlen=200)
        self._stderr_all: list[bytes] | None = [] if keep_stderr else None
        chan.settimeout(_POLL_S)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _alive(self) -> bool:
        """The connection this command runs on is still up."""
        transport = self._chan.get_transport()
        return bool(transport is not None and transport.is_active())

    # -- stderr -------------------------------------------------------------------------
    def _read_stderr(self) -> None:
        buf = b""
        while True:
            try:
                data = self._chan.recv_stderr(32768)
            except TimeoutError:
                continue
            except Exception:
                break
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self._stderr_line(line)
        if buf:
            self._stderr_line(buf)
        self._pid_event.set()

    def _stderr_line(self, line: bytes) -> None:
        if self.pid is None:
            m = _PID_RE.match(line.rstrip(b"\r"))
            if m:
                self.pid = int(m.group(1))
                self._pid_event.set()
                return
        if self._stderr_all is not None:
            self._stderr_all.append(line + b"\n")
        self._stderr.append(line.decode("utf-8", errors="replace").rstrip("\r"))

    def stderr_tail(self) -> list[str]:
        """The last (up to 200) stderr lines."""
        return list(self._stderr)

    def stderr_text(self, timeout: float = 5.0) -> str:
        """All of stderr (for :meth:`SshTarget.run`), after the stream ended."""
        self._drain.join(timeout)
        return b"".join(self._stderr_all or []).decode("utf-8", errors="replace")

    # -- stdin ----------------------------------------------------------------------------
    def write(self, text: str) -> None:
        """Send ``text`` to stdin.

        Raises:
            TargetError: the connection is gone or the command closed its stdin.
        """
        try:
            self._chan.sendall(text.encode())
        except (OSError, EOFError) as exc:
            raise self._target._lost(exc) from None
        except Exception as exc:  # paramiko.SSHException
            raise self._target._lost(exc) from None

    def close_stdin(self) -> None:
        """EOF on stdin."""
        with contextlib.suppress(Exception):
            self._chan.shutdown_write()

    # -- stdout ---------------------------------------------------------------------------
    def _chunks(self, deadline: float | None) -> Iterator[bytes]:
        while True:
            try:
                data = self._chan.recv(65536)
            except TimeoutError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError from None
                if not self._alive():
                    break
                continue
            except (OSError, EOFError) as exc:
                raise self._target._lost(exc) from None
            if not data:
                break
            yield data
        self._check_end()

    def _check_end(self) -> None:
        """After EOF: the exit status arrives soon; if the connection died instead, raise."""
        if self.killed:
            return
        self._settle(5.0)

    def _settle(self, grace_s: float) -> None:
        """Wait (up to ``grace_s``) until the exit status is known or the connection is seen
        dead. paramiko also marks a channel closed by a dying connection as "status known"
        (with status -1), so -1 counts only once the connection proved alive for 1 s.

        Raises:
            TargetError: the connection dropped.
        """
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            got = self._chan.status_event.is_set()
            if got and self._chan.exit_status != -1:
                return
            if not self._alive():
                if self.killed:
                    return
                raise self._target._lost(None)
            if (got and elapsed > 1.0) or elapsed > grace_s:
                return
            time.sleep(0.02)

    def lines(self) -> Iterator[str]:
        """stdout lines (no newline) as they arrive, until EOF.

        Raises:
            TargetError: the connection dropped before the command's exit status came.
        """
        buf = b""
        for data in self._chunks(None):
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.decode("utf-8", errors="replace").rstrip("\r")
        if buf:
            yield buf.decode("utf-8", errors="replace")

    def read_all(self, timeout: float | None) -> str:
        """All of stdout until EOF.

        Raises:
            TargetError: timeout (the command is killed) or a dropped connection.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        parts: list[bytes] = []
        try:
            for data in self._chunks(deadline):
                parts.append(data)
        except TimeoutError:
            self.kill()
            raise TargetError(
                f"`{self._argv0}` timed out after {timeout:g} s on {self._target.url}"
            ) from None
        return b"".join(parts).decode("utf-8", errors="replace")

    # -- end --------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> int:
        """Exit status (negative = killed by that signal; -1 = none was sent).

        Raises:
            TargetError: still running after ``timeout`` seconds, or the connection dropped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._chan.status_event.wait(_POLL_S):
            if not self._alive():
                if self.killed:
                    return -1
                raise self._target._lost(None)
            if deadline is not None and time.monotonic() > deadline:
                raise TargetError(f"`{self._argv0}` on {self._target.url} still running")
        if self._chan.exit_status == -1 and not self.killed:
            self._settle(1.5)
        self._drain.join(2.0)  # the last stderr lines
        return int(self._chan.exit_status)

    def send_signal(self, sig: int | str = "TERM") -> bool:
        """Send signal ``sig`` (a name: ``INT``, ``TERM``, ``KILL``; or a number) to the
        remote process (and its process group); False if its PID is unknown or the
        connection is gone."""
        name = sig if isinstance(sig, str) else signal.Signals(sig).name.removeprefix("SIG")
        self._pid_event.wait(2.0)
        if self.pid is None or not self._alive():
            return False
        script = 'kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2"'
        try:
            self._target.run(["sh", "-c", script, "sh", name, str(self.pid)], timeout=10)
        except TargetError:
            return False
        return True

    def abandon(self) -> None:
        """Stop reading and close the channel without signalling the process (for a device
        that stopped answering: a signal could not be delivered anyway)."""
        self.killed = True
        with contextlib.suppress(Exception):
            self._chan.close()

    def kill(self) -> None:
        """SIGTERM the remote process (over a second channel), then close the channel."""
        self.killed = True
        if not self._chan.status_event.is_set():
            self.send_signal("TERM")
        with contextlib.suppress(Exception):
            self._chan.close()

    @property
    def exit_signal(self) -> str | None:
        """Name of the signal that killed the command (``KILL``), if one did."""
        return getattr(self._chan, "exit_signal", None)
