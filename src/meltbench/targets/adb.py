"""Android phones over adb, on adbutils.

An :class:`AdbTarget` talks to the adb *server* (``adb start-server``; host and port from
``ANDROID_ADB_SERVER_HOST`` / ``ANDROID_ADB_SERVER_PORT``, default ``127.0.0.1:5037``),
which forwards to the phone's ``adbd``. The wire protocol is adb's host protocol
(https://android.googlesource.com/platform/packages/modules/adb/+/refs/heads/main/protocol.txt
and ``SERVICES.TXT``, ``SYNC.TXT``): a 4-hex-digit length and the request, answered
``OKAY`` or ``FAIL`` + a length-prefixed message.

- **Commands** go through the ``shell,v2:`` service (adbd >= Android 7): stdout, stderr and
  the exit status come back as separate packets (one id byte, a little-endian u32 length,
  the data: 0 stdin, 1 stdout, 2 stderr, 3 exit, 4 close stdin). The command line is the
  argument list quoted by :func:`meltbench.targets.base.quote` and prefixed with
  ``echo <marker>$$ >&2; exec``: the process id (the shell's, which ``exec`` keeps) is read
  from stderr so that :meth:`AdbProcess.kill` can ``kill -9`` it in a second shell.
  A device without ``shell_v2`` falls back to ``shell:`` (stdout and stderr merged, the
  status read from an ``echo`` appended after the command).
- **Files** move with adbutils' ``sync`` (``SEND``/``RECV``/``STAT``); every file this
  target pushes lands under :attr:`AdbTarget.workdir` (``/data/local/tmp/meltbench``, the
  one world-writable place of a stock phone that allows executables), and
  :meth:`cleanup` removes that directory.
- **No hang**: every socket has a timeout, commands have a deadline, and a connection the
  server closes before the exit packet (the phone was unplugged, adbd restarted) is a
  :class:`TargetError` starting with ``device disconnected:``.

adbutils starts a local ``adb`` binary when it cannot connect to the server; this target
does not (:class:`_NoSpawnClient`): an unreachable server is a :class:`TargetError` that
says to run ``adb start-server``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import socket
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import adbutils
from adbutils import AdbConnection, AdbError

from meltbench.errors import UsageError
from meltbench.targets.adb_process import (
    _EXIT_MARK,
    _PID_MARK,
    AdbProcess,
    _disconnected,
    _label,
    _ShellV2,
)
from meltbench.targets.base import Completed, Target, TargetError, quote

__all__ = [
    "DEFAULT_WORKDIR",
    "AdbProcess",
    "AdbTarget",
    "adb_server_address",
    "parse_adb_url",
]

#: where meltbench keeps its files on the phone
DEFAULT_WORKDIR = "/data/local/tmp/meltbench"
#: seconds to wait for the adb server to answer a request
DEFAULT_IO_TIMEOUT = 15.0


def adb_server_address(host: str | None = None, port: int | None = None) -> tuple[str, int]:
    """The adb server's address: the arguments, else ``ANDROID_ADB_SERVER_HOST`` /
    ``ANDROID_ADB_SERVER_PORT``, else ``127.0.0.1:5037`` (adb's own defaults)."""
    host = host or os.environ.get("ANDROID_ADB_SERVER_HOST") or "127.0.0.1"
    if port is None:
        env = os.environ.get("ANDROID_ADB_SERVER_PORT")
        port = int(env) if env and env.isdigit() else 5037
    return host, port


def parse_adb_url(url: str) -> str:
    """The serial of ``adb://SERIAL`` (``""`` for ``adb://``: the only device attached).

    Raises:
        ValueError: not an ``adb://`` URL, or a serial with a character adb does not use.
    """
    if not url.startswith("adb://"):
        raise ValueError(f"not an adb target URL: {url!r} (expected adb://SERIAL)")
    serial = url[len("adb://") :].rstrip("/")
    if any(c.isspace() or c in "'\";|&$`\\" for c in serial):
        raise ValueError(f"adb serial {serial!r} has characters a serial never has")
    return serial


class _NoSpawnConnection(AdbConnection):
    """adbutils' connection, without its fallback of running ``adb start-server``."""

    def _safe_connect(self) -> socket.socket:
        return self._create_socket()


class _NoSpawnClient(adbutils.AdbClient):
    """adbutils' client whose connections never start a local adb server and always
    carry a socket timeout (adbutils' sync connections have none otherwise)."""

    def __init__(self, host: str, port: int, socket_timeout: float) -> None:
        super().__init__(host, port, socket_timeout)
        self._timeout = socket_timeout

    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        conn = _NoSpawnConnection(self.host, self.port)
        conn.conn.settimeout(timeout or self._timeout)
        return conn


class AdbTarget(Target):
    """An Android device reached through the adb server.

    Args:
        url: ``adb://SERIAL`` (``adb://`` alone: the only device attached).
        host, port: the adb server (default: :func:`adb_server_address`).
        io_timeout: seconds any single exchange with the server may take.
        workdir: meltbench's directory on the phone (must stay under
            ``/data/local/tmp``).

    Raises:
        ValueError: a malformed URL, or a workdir outside ``/data/local/tmp``.
    """

    @classmethod
    def from_spec(cls, spec: Any, connect: bool = True) -> AdbTarget:
        """A target from a parsed :class:`~meltbench.targets.config.TargetSpec` (its URL and
        workdir); adb connects per call, so ``connect`` has nothing to do here.

        Raises:
            UsageError: a workdir outside ``/data/local/tmp``.
        """
        try:
            if spec.workdir:
                return cls(spec.url, workdir=spec.workdir)
            return cls(spec.url)
        except ValueError as exc:
            raise UsageError(f"target {spec.name!r}: {exc}") from None

    def __init__(
        self,
        url: str,
        *,
        host: str | None = None,
        port: int | None = None,
        io_timeout: float = DEFAULT_IO_TIMEOUT,
        workdir: str = DEFAULT_WORKDIR,
    ) -> None:
        norm = posixpath.normpath(workdir)
        if not norm.startswith("/data/local/tmp/") or norm == "/data/local/tmp":
            raise ValueError(
                f"adb workdir must be a directory under /data/local/tmp, not {workdir}"
            )
        super().__init__(url=url, workdir=norm, python=None, kind="adb")
        self.serial = parse_adb_url(url)
        self.host, self.port = adb_server_address(host, port)
        self.io_timeout = io_timeout
        self.client = _NoSpawnClient(self.host, self.port, io_timeout)
        self._v2: bool | None = None

    def __repr__(self) -> str:
        return f"AdbTarget({self.url!r}, server={self.host}:{self.port})"

    # -- connection --------------------------------------------------------------------

    def _server(self) -> str:
        return f"{self.host}:{self.port}"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an adbutils call, turning its errors into one-line :class:`TargetError`."""
        try:
            return fn(*args, **kwargs)
        except (TimeoutError, adbutils.AdbTimeout) as exc:
            raise TargetError(
                f"device disconnected: {what}: no answer from the adb server at "
                f"{self._server()} within {self.io_timeout:g} s ({exc})"
            ) from None
        except (AdbError, OSError, EOFError, struct.error) as exc:
            text = str(exc) or type(exc).__name__
            if "refused" in text or "connect to adb server" in text:
                raise TargetError(
                    f"no adb server at {self._server()}: start it with `adb start-server` "
                    "(or set ANDROID_ADB_SERVER_HOST/ANDROID_ADB_SERVER_PORT)"
                ) from None
            raise _disconnected(what, text) from None

    def devices(self) -> list[dict[str, Any]]:
        """Devices the server knows: ``[{"serial", "state", **tags}]`` (``adb devices -l``).

        Raises:
            TargetError: no adb server.
        """
        infos = self._call("listing devices", self.client.list, extended=True)
        return [{"serial": i.serial, "state": i.state, **dict(i.tags)} for i in infos]

    def check_online(self) -> dict[str, Any]:
        """Check the device is attached and usable; pick it when the URL names none.

        Returns:
            its entry of :meth:`devices`.

        Raises:
            TargetError: no server, device not attached, or in a state other than
                ``device`` (``unauthorized``: accept the debugging prompt; ``offline``).
        """
        found = self.devices()
        if not self.serial:
            ready = [d for d in found if d["state"] == "device"]
            if len(ready) != 1:
                names = ", ".join(d["serial"] for d in ready) or "none"
                raise TargetError(
                    f"adb:// names no device and {len(ready)} are attached ({names}); "
                    "use adb://SERIAL"
                )
            self.serial = ready[0]["serial"]
        entry = next((d for d in found if d["serial"] == self.serial), None)
        if entry is None:
            names = ", ".join(f"{d['serial']} ({d['state']})" for d in found) or "none"
            raise TargetError(
                f"adb device {self.serial!r} is not attached to the adb server at "
                f"{self._server()} (attached: {names}); check `adb devices`"
            )
        state = entry["state"]
        if state == "unauthorized":
            raise TargetError(
                f"adb device {self.serial!r} is unauthorized: unlock the phone and accept "
                "the USB debugging prompt"
            )
        if state != "device":
            raise TargetError(
                f"adb device {self.serial!r} is {state}, not ready; reconnect it "
                "(`adb reconnect`) and check `adb devices`"
            )
        return entry

    @property
    def device(self) -> adbutils.AdbDevice:
        """The adbutils device (for anything this class does not wrap)."""
        return adbutils.AdbDevice(self.client, serial=self.serial)

    def _transport(self, timeout: float | None = None) -> AdbConnection:
        """A connection switched to the device (``host:transport:SERIAL``)."""
        conn = self.client.make_connection(timeout or self.io_timeout)
        try:
            conn.send_command(f"host:transport:{self.serial}")
            conn.check_okay()
        except BaseException:
            conn.close()
            raise
        return conn

    def _supports_v2(self) -> bool:
        if self._v2 is None:
            features = self._call(
                "reading adbd features", self.device.get_features
            )  # host-serial:SERIAL:features
            self._v2 = "shell_v2" in str(features).split(",")
        return self._v2

    # -- commands ----------------------------------------------------------------------

    @staticmethod
    def command_line(argv: Sequence[str]) -> str:
        """The shell line run for ``argv``: the pid marker, then ``exec`` + quoted argv."""
        if not argv:
            raise ValueError("empty command")
        return f"echo {_PID_MARK}$$ >&2; exec {quote(argv)}"

    def start(self, argv: Sequence[str]) -> AdbProcess:
        """Start ``argv`` on the phone (``shell,v2``) and stream it.

        Raises:
            TargetError: no server, device gone, or adbd without ``shell_v2``
                (Android < 7).
        """
        if not self._supports_v2():
            raise TargetError(
                f"adb device {self.serial!r} has no shell_v2 (Android < 7): streaming "
                "commands needs Android 7 or later"
            )
        line = self.command_line(argv)

        def open_shell() -> AdbConnection:
            conn = self._transport()
            try:
                conn.send_command(f"shell,v2,raw:{line}")
                conn.check_okay()
            except BaseException:
                conn.close()
                raise
            return conn

        label = _label(argv)
        conn = self._call(f"starting {label}", open_shell)
        return AdbProcess(self, _ShellV2(conn), line, label)

    def run(
        self, argv: Sequence[str], *, timeout: float | None = 60.0, input: str | None = None
    ) -> Completed:
        """Run ``argv`` on the phone and wait for it (``timeout`` seconds, then it is
        killed).

        Raises:
            TargetError: no server, ``device disconnected: ...``, or ``timed out``.
        """
        if not self._supports_v2():
            return self._run_v1(argv, timeout, input)
        proc = self.start(argv)
        if input is not None:
            proc.write(input)
        proc.close_stdin()
        try:
            code = proc.wait(timeout)
        except TargetError:
            proc.kill()
            raise
        return Completed(code, "\n".join(proc.stdout_lines), "\n".join(proc.stderr_tail()))

    def _run_v1(self, argv: Sequence[str], timeout: float | None, input: str | None) -> Completed:
        """``shell:`` fallback: output merged, status from an appended ``echo``."""
        if input is not None:
            raise TargetError(
                f"adb device {self.serial!r} has no shell_v2: cannot send stdin (Android < 7)"
            )
        cmd = f"{quote(argv)}; echo {_EXIT_MARK}$?"

        def go() -> str:
            conn = self._transport(timeout)
            try:
                conn.send_command(f"shell:{cmd}")
                conn.check_okay()
                return conn.read_until_close()
            finally:
                conn.close()

        out = str(self._call(f"running {argv[0]}", go))
        head, sep, tail = out.rpartition(_EXIT_MARK)
        if not sep:
            raise _disconnected(f"running {argv[0]}", "output ended before the exit status")
        return Completed(int(tail.strip() or 255), head.rstrip("\n"), "")

    def getprop(self) -> dict[str, str]:
        """All system properties (``getprop``), ``{name: value}``.

        Raises:
            TargetError: as :meth:`run`.
        """
        from meltbench.targets.llama_bench import parse_getprop

        done = self.run(["getprop"], timeout=30)
        return parse_getprop(done.stdout)

    # -- files -------------------------------------------------------------------------

    def _check_remote(self, remote: str) -> str:
        norm = posixpath.normpath(remote)
        if not (norm + "/").startswith(self.workdir + "/"):
            raise ValueError(f"adb target writes only under {self.workdir}, not {remote}")
        return norm

    def push(self, local: str, remote: str) -> None:
        """Copy ``local`` to ``remote`` (under :attr:`workdir`; parents created), size
        checked.

        Raises:
            ValueError: ``remote`` outside :attr:`workdir`.
            TargetError: the device went away.
        """
        remote = self._check_remote(remote)
        parent = posixpath.dirname(remote)
        done = self.run(["mkdir", "-p", parent], timeout=30)
        if not done.ok:
            raise TargetError(f"cannot create {parent} on {self.serial}: {done.stderr.strip()}")
        mode = os.stat(local).st_mode & 0o777
        self._call(
            f"pushing {Path(local).name}",
            self.device.sync.push,
            str(local),
            remote,
            mode=mode,
            check=True,
        )

    def pull(self, remote: str, local: str) -> None:
        """Copy ``remote`` from the phone to ``local``.

        Raises:
            TargetError: the file does not exist there or the device went away.
        """
        sync = self.device.sync
        info = self._call(f"reading {remote}", sync.stat, remote)
        if not info.mode:
            raise TargetError(f"{remote} does not exist on {self.serial}")
        self._call(f"pulling {remote}", sync.pull_file, remote, local)

    def sha256(self, remote: str) -> str | None:
        """The SHA-256 of ``remote`` (``sha256sum``), None when missing or unavailable."""
        done = self.run(["sha256sum", remote], timeout=600)
        if not done.ok or not done.stdout.strip():
            return None
        digest = done.stdout.split()[0].lower()
        return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None

    def push_checked(self, local: str, remote: str, *, mode: str | None = None) -> bool:
        """Push ``local`` unless ``remote`` already has the same SHA-256; then check it.

        Args:
            mode: ``chmod`` mode to set after pushing (``"755"`` for executables).

        Returns:
            True if the file was pushed, False if it was already there.

        Raises:
            TargetError: the device went away, or the pushed file's checksum differs.
        """
        remote = self._check_remote(remote)
        want = file_sha256(local)
        pushed = False
        if self.sha256(remote) != want:
            self.push(local, remote)
            got = self.sha256(remote)
            if got is not None and got != want:
                raise TargetError(
                    f"checksum of {remote} on {self.serial} is {got[:12]}..., expected "
                    f"{want[:12]}...: the push was corrupted; try again"
                )
            pushed = True
        if mode is not None:
            done = self.run(["chmod", mode, remote], timeout=30)
            if not done.ok:
                raise TargetError(f"chmod {mode} {remote} failed: {done.stderr.strip()}")
        return pushed

    def cleanup(self) -> None:
        """Remove :attr:`workdir` (``rm -rf``) and all meltbench pushed there."""
        self._check_remote(self.workdir)
        self.run(["rm", "-rf", self.workdir], timeout=120)

    def describe(self) -> dict[str, Any]:
        """Serial, model, Android version, SoC and ABI from ``getprop``."""
        info = super().describe()
        with contextlib.suppress(TargetError):
            props = self.getprop()
            info.update(android_environment(props))
        info["serial"] = self.serial
        return info


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a local file (cached by path, size and mtime)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    cached = _SHA_CACHE.get(key)
    if cached:
        return cached
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


#: getprop names recorded as the environment of an Android run
ANDROID_PROPS = {
    "model": "ro.product.model",
    "manufacturer": "ro.product.manufacturer",
    "device": "ro.product.device",
    "android_version": "ro.build.version.release",
    "sdk": "ro.build.version.sdk",
    "build_id": "ro.build.id",
    "build_fingerprint": "ro.build.fingerprint",
    "soc_model": "ro.soc.model",
    "soc_manufacturer": "ro.soc.manufacturer",
    "board_platform": "ro.board.platform",
    "hardware": "ro.hardware",
    "abi": "ro.product.cpu.abi",
    "abilist": "ro.product.cpu.abilist",
}


def android_environment(props: dict[str, str]) -> dict[str, Any]:
    """The Android facts of a ``getprop`` dump: ``{"os": "Android", "model", ...}``
    (keys of :data:`ANDROID_PROPS`; None when a property is not set)."""
    env: dict[str, Any] = {"os": "Android"}
    for key, prop in ANDROID_PROPS.items():
        env[key] = props.get(prop) or None
    return env
