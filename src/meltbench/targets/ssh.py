"""Linux devices over SSH, on paramiko (https://www.paramiko.org).

Security:

- **Host keys are verified by default.** The user's ``~/.ssh/known_hosts`` (plus
  ``/etc/ssh/ssh_known_hosts``), or the target's ``known_hosts`` file, must hold the
  device's key. An unknown key is refused with :class:`HostKeyError`, saying how to
  accept it: ``accept_new_host_key: true`` in the targets file or ``--accept-new-host-key``
  (OpenSSH's ``StrictHostKeyChecking=accept-new``), which appends the key to that
  known_hosts file. A *changed* key is always refused.
- Authentication uses ``identity_file``, the SSH agent and ``~/.ssh/id_*`` keys, or a
  password taken from the environment variable named by ``password_env``; no password is
  stored, logged or returned by :meth:`SshTarget.describe`.
- Every command is an argument list quoted with :func:`~meltbench.targets.base.quote`;
  files move over SFTP (no shell involved).

Liveness: TCP keepalive plus ``TCP_USER_TIMEOUT`` (Linux) and SSH keepalive packets every
15 s, so a device that vanishes without closing the connection is noticed within about
45 s; a closed connection is noticed at once. Reads poll with a 0.25 s channel timeout,
so nothing blocks forever: a stream that ends without an exit status on a dead
connection raises :class:`~meltbench.targets.base.TargetError`.

Every remote command runs as ``sh -c 'printf "MELTBENCH-PID %s\\n" $$ >&2; exec "$@"' sh
ARGV...``: the process reports its PID on stderr (removed from the output), so that
:meth:`SshProcess.kill` can signal it over a second channel (paramiko has no "signal"
channel request). paramiko drops the ``exit-signal`` message; this module records it, so
a command killed by a signal has a negative exit status as with :mod:`subprocess`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import posixpath
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meltbench.targets.base import Completed, Target, TargetError, quote
from meltbench.targets.ssh_process import (
    HostKeyError,
    SshProcess,
    _host_key_name,
    _install_exit_signal_handler,
    _make_policy,
    _need_paramiko,
    _reason,
    _tune_socket,
    fingerprint,
)

try:
    import paramiko
except ImportError:  # pragma: no cover - paramiko is in the "remote" extra
    paramiko = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from meltbench.targets.config import TargetSpec

__all__ = ["HostKeyError", "SshProcess", "SshTarget", "fingerprint"]

DEFAULT_WORKDIR = "~/.cache/meltbench-target"
KEEPALIVE_S = 15
_WRAPPER = 'printf "MELTBENCH-PID %s\\n" "$$" >&2; exec "$@"'


@dataclass
class SshTarget(Target):
    """A Linux (or macOS, Termux) machine over SSH.

    Create with :meth:`from_spec` (or :func:`meltbench.targets.config.open_target`), then
    :meth:`connect`. ``workdir`` and ``venv`` may start with ``~``: they are made
    absolute on connect (the SFTP server's home directory).

    Attributes:
        host, port, user: where and as whom (port/user: None = ``~/.ssh/config`` or 22 and
            the local user name).
        identity_file: private key file (None = agent and default keys).
        known_hosts: known_hosts file (None = ``~/.ssh/known_hosts``).
        accept_new_host_key: accept and record an unknown host key.
        connect_timeout_s: TCP connect, SSH handshake and authentication limit, seconds.
        password_env: name of an environment variable holding a password.
        venv: the device venv (None = ``<workdir>/venv``).
        name: the target's name (from the targets file) or its URL.
    """

    kind: str = "ssh"
    host: str = ""
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    connect_timeout_s: float = 10.0
    password_env: str | None = None
    venv: str | None = None
    name: str = ""
    _client: Any = field(default=None, repr=False, compare=False)
    _sftp: Any = field(default=None, repr=False, compare=False)
    _home: str | None = field(default=None, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)

    @classmethod
    def from_spec(cls, spec: TargetSpec, connect: bool = False) -> SshTarget:
        """A target from a parsed spec, connected when ``connect`` (so that an unreachable
        host or a refused key fails here).

        Raises:
            TargetError: with ``connect``: unreachable, refused host key, failed login.
        """
        target = cls(
            url=spec.url,
            workdir=spec.workdir or DEFAULT_WORKDIR,
            python=spec.python or "python3",
            host=spec.host or "",
            port=spec.port,
            user=spec.user,
            identity_file=spec.identity_file,
            known_hosts=spec.known_hosts,
            accept_new_host_key=spec.accept_new_host_key,
            connect_timeout_s=spec.connect_timeout_s,
            password_env=spec.password_env,
            venv=spec.venv,
            name=spec.name,
        )
        if connect:
            target.connect()
        return target

    # -- connection -------------------------------------------------------------------------
    def _resolved(self) -> tuple[str, int, str, list[str]]:
        """host, port, user, identity files after ``~/.ssh/config`` (for unset values)."""
        host, port, user = self.host, self.port, self.user
        keys = [self.identity_file] if self.identity_file else []
        cfg_path = Path.home() / ".ssh" / "config"
        if cfg_path.is_file():
            try:
                cfg = paramiko.SSHConfig.from_path(str(cfg_path)).lookup(host)
            except Exception:
                cfg = {}
            host = cfg.get("hostname", host)
            if port is None and cfg.get("port"):
                with contextlib.suppress(ValueError):
                    port = int(cfg["port"])
            user = user or cfg.get("user")
            if not keys:
                keys = [os.path.expanduser(k) for k in cfg.get("identityfile", [])]
                keys = [k for k in keys if os.path.isfile(k)]
        return host, port or 22, user or getpass.getuser(), keys

    @property
    def address(self) -> str:
        """``ssh://host:port`` (for messages)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{host}:{self.port or 22}"

    def connect(self) -> SshTarget:
        """Connect, verify the host key, authenticate, resolve ``workdir``/``venv``.

        Raises:
            HostKeyError: unknown (not accepted) or changed host key.
            TargetError: unreachable (``cannot reach ssh://host:port: <reason>``), SSH
                handshake or authentication failed.
            UsageError: paramiko is not installed.
        """
        _need_paramiko()
        with self._lock:
            if self._active():
                return self
            self._close_client()
            host, port, user, keys = self._resolved()
            where = f"ssh://{f'[{host}]' if ':' in host else host}:{port}"
            default_known = str(Path.home() / ".ssh" / "known_hosts")
            known = self.known_hosts or default_known
            client = paramiko.SSHClient()
            try:
                if self.known_hosts is None and os.path.isfile("/etc/ssh/ssh_known_hosts"):
                    with contextlib.suppress(OSError):
                        client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
                if os.path.isfile(known):
                    client.load_host_keys(known)
            except (OSError, paramiko.SSHException) as exc:
                raise TargetError(f"cannot read known_hosts {known}: {exc}") from None
            client.set_missing_host_key_policy(
                _make_policy(known, self.accept_new_host_key, self.url)
            )
            try:
                sock = socket.create_connection((host, port), timeout=self.connect_timeout_s)
            except OSError as exc:
                client.close()
                raise TargetError(
                    f"cannot reach {where}: {_reason(exc)}; check that the device is on and "
                    "sshd listens there"
                ) from None
            _tune_socket(sock)
            password = os.environ.get(self.password_env) if self.password_env else None
            try:
                client.connect(
                    hostname=host,
                    port=port,
                    username=user,
                    password=password,
                    key_filename=keys or None,
                    look_for_keys=not keys,
                    allow_agent=True,
                    sock=sock,
                    timeout=self.connect_timeout_s,
                    banner_timeout=self.connect_timeout_s,
                    auth_timeout=self.connect_timeout_s,
                )
            except HostKeyError:
                client.close()
                raise
            except paramiko.BadHostKeyException as exc:
                client.close()
                name = _host_key_name(host, port)
                raise HostKeyError(
                    f"host key of {self.url} CHANGED (now {exc.key.get_name()} "
                    f"{fingerprint(exc.key)}, {known} has {fingerprint(exc.expected_key)}): "
                    "possibly an attack; if the device was reinstalled, remove the old key "
                    f"with `ssh-keygen -R '{name}' -f {known}` and connect again"
                ) from None
            except paramiko.AuthenticationException as exc:
                client.close()
                raise TargetError(
                    f"authentication as {user} on {where} failed ({exc}); set identity_file "
                    "in the targets file, load a key into ssh-agent, or check the user name"
                ) from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                client.close()
                raise TargetError(f"cannot reach {where}: {_reason(exc)}") from None
            transport = client.get_transport()
            transport.set_keepalive(KEEPALIVE_S)
            _install_exit_signal_handler(transport)
            self._client = client
            self._resolve_paths()
        return self

    def _resolve_paths(self) -> None:
        try:
            self._home = self._sftp_client().normalize(".")
        except (OSError, Exception):
            self._home = None
        if self._home is None:
            done = self.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30)
            self._home = done.stdout.strip() or "/"
        self.workdir = self.expand(self.workdir or DEFAULT_WORKDIR)
        self.venv = self.expand(self.venv) if self.venv else posixpath.join(self.workdir, "venv")

    def expand(self, path: str) -> str:
        """``~``/relative paths made absolute against the remote home directory."""
        home = self._home or "/"
        if path == "~":
            return home
        if path.startswith("~/"):
            return posixpath.join(home, path[2:])
        if not path.startswith("/"):
            return posixpath.join(home, path)
        return path

    def _active(self) -> bool:
        client = self._client
        transport = client.get_transport() if client is not None else None
        return bool(transport is not None and transport.is_active())

    def ping(self, timeout: float = 15.0) -> bool:
        """True if the device's sshd runs a trivial command (``true``) within ``timeout``
        seconds: an end-to-end liveness check for a connection that TCP still thinks is
        open (a hung device, a stopped sshd)."""
        if not self._active():
            return False
        transport = self._client.get_transport()
        answered = threading.Event()

        def probe() -> None:
            try:
                chan = transport.open_session(timeout=timeout)
                chan.exec_command("true")
                if chan.status_event.wait(timeout):
                    answered.set()
                chan.close()
            except Exception:
                return

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(timeout + 1.0)
        return answered.is_set()

    def _transport(self) -> Any:
        if not self._active():
            self.connect()
        return self._client.get_transport()

    def _lost(self, exc: BaseException | None) -> TargetError:
        """The error for a dropped connection."""
        transport = self._client.get_transport() if self._client is not None else None
        cause = exc or (getattr(transport, "saved_exception", None) if transport else None)
        why = _reason(cause) if cause is not None and not isinstance(cause, EOFError) else None
        why = why or "connection closed"
        return TargetError(f"connection to {self.url} lost ({why})")

    def _sftp_client(self) -> Any:
        with self._lock:
            transport = self._transport()
            if self._sftp is None or self._sftp.get_channel().get_transport() is not transport:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(
                        transport, window_size=2**27, max_packet_size=2**15
                    )
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise TargetError(
                        f"cannot open SFTP on {self.url} ({_reason(exc)}); enable the sftp "
                        "subsystem in sshd_config"
                    ) from None
            return self._sftp

    def _close_client(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._sftp = None
        self._client = None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._close_client()

    # -- commands ----------------------------------------------------------------------------
    def _exec(self, argv: Sequence[str], keep_stderr: bool) -> SshProcess:
        if not argv:
            raise ValueError("empty command")
        command = quote(["sh", "-c", _WRAPPER, "sh", *[str(a) for a in argv]])
        try:
            transport = self._transport()
            chan = transport.open_session(timeout=self.connect_timeout_s)
            chan.exec_command(command)
        except TargetError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc) from None
        return SshProcess(self, chan, argv, keep_stderr)

    def run(
        self, argv: Sequence[str], *, timeout: float | None = 60.0, input: str | None = None
    ) -> Completed:
        """Run ``argv`` (quoted) on the device and wait for it.

        Returns:
            exit status (127: no such command; negative: killed by that signal), stdout,
            stderr.

        Raises:
            TargetError: unreachable, connection lost, or ``timeout`` seconds passed (the
                command is then sent SIGTERM).
        """
        proc = self._exec(argv, keep_stderr=True)
        if input:
            proc.write(input)
        proc.close_stdin()
        out = proc.read_all(timeout)
        code = proc.wait(30)
        return Completed(code, out, proc.stderr_text())

    def start(self, argv: Sequence[str]) -> SshProcess:
        """Start ``argv`` (quoted) and stream it (see :class:`SshProcess`).

        Raises:
            TargetError: unreachable or connection lost.
        """
        return self._exec(argv, keep_stderr=False)

    # -- files ------------------------------------------------------------------------------
    def _mkdirs(self, sftp: Any, path: str) -> None:
        parts: list[str] = []
        while path not in ("", "/"):
            try:
                sftp.stat(path)
                break
            except OSError:
                parts.append(path)
                path = posixpath.dirname(path)
        for p in reversed(parts):
            with contextlib.suppress(OSError):
                sftp.mkdir(p, mode=0o700)

    def push(self, local: str, remote: str) -> None:
        """Copy ``local`` to ``remote`` over SFTP (parents created, written to a temporary
        name and renamed, so a half-copied file never has the final name).

        Raises:
            TargetError: the copy failed or the connection dropped.
        """
        remote = self.expand(remote)
        tmp = posixpath.join(
            posixpath.dirname(remote), f".{posixpath.basename(remote)}.{uuid.uuid4().hex[:8]}.part"
        )
        sftp = self._sftp_client()
        try:
            self._mkdirs(sftp, posixpath.dirname(remote))
            sftp.put(local, tmp, confirm=True)
            try:
                sftp.posix_rename(tmp, remote)
            except OSError:
                with contextlib.suppress(OSError):
                    sftp.remove(remote)
                sftp.rename(tmp, remote)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            with contextlib.suppress(Exception):
                sftp.remove(tmp)
            if not self._active():
                raise self._lost(exc) from None
            raise TargetError(f"cannot push {local} to {self.url}:{remote}: {exc}") from None

    def pull(self, remote: str, local: str) -> None:
        """Copy ``remote`` from the device to ``local`` (parents created).

        Raises:
            TargetError: the copy failed or the connection dropped.
        """
        remote = self.expand(remote)
        dest = Path(local)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        sftp = self._sftp_client()
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            sftp.get(remote, str(tmp))
            tmp.replace(dest)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if not self._active():
                raise self._lost(exc) from None
            raise TargetError(f"cannot pull {self.url}:{remote} to {local}: {exc}") from None

    def stat(self, remote: str) -> tuple[int, int] | None:
        """``(size_bytes, mtime_s)`` of a remote file, or None if it does not exist."""
        try:
            st = self._sftp_client().stat(self.expand(remote))
        except OSError:
            return None
        return int(st.st_size or 0), int(st.st_mtime or 0)

    def write_text(self, remote: str, text: str) -> None:
        """Write ``text`` to the remote file (parents created; atomic rename)."""
        remote = self.expand(remote)
        sftp = self._sftp_client()
        tmp = f"{remote}.{uuid.uuid4().hex[:8]}.part"
        try:
            self._mkdirs(sftp, posixpath.dirname(remote))
            with sftp.open(tmp, "w") as fh:
                fh.write(text.encode())
            sftp.posix_rename(tmp, remote)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise TargetError(f"cannot write {self.url}:{remote}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        """Address, directories and collected facts; never keys, passwords or paths to
        them."""
        return {
            "url": self.url,
            "name": self.name or self.url,
            "kind": self.kind,
            "host": self.host,
            "port": self.port or 22,
            "user": self.user,
            "workdir": self.workdir,
            "venv": self.venv,
            "python": self.python,
            **self.facts,
        }

    def cleanup(self) -> None:
        """Remove :attr:`workdir` (refusing ``/`` and the home directory).

        Raises:
            TargetError: the workdir is not a meltbench-owned path, or removal failed.
        """
        if not self._active():
            self.connect()
        path = posixpath.normpath(self.workdir)
        if path in ("/", posixpath.normpath(self._home or "/")) or path.count("/") < 2:
            raise TargetError(f"refusing to remove {path} on {self.url}: not a meltbench workdir")
        done = self.run(["rm", "-rf", "--", path], timeout=300)
        if not done.ok:
            raise TargetError(f"cannot remove {path} on {self.url}: {done.stderr.strip()}")
