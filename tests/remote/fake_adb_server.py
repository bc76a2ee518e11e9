"""A fake adb server on loopback: adb's host protocol in front of a sandbox "phone".

No Android device (and no adb binary) exists in the test environment, so the adb target
is tested against this server: adbutils and meltbench's :class:`AdbTarget` talk to it
exactly as they would to ``adb start-server`` on port 5037, and it answers from a
sandbox directory that plays the phone's root.

Protocol (adb's ``protocol.txt``, ``SERVICES.TXT``, ``SYNC.TXT`` in
https://android.googlesource.com/platform/packages/modules/adb/): every request is 4 hex
digits of length + the request; replies are ``OKAY`` or ``FAIL`` + 4 hex digits + message.
Implemented, which is everything adbutils 2.12 sends for what meltbench uses:

- host services: ``host:version`` (41), ``host:devices``, ``host:devices-l``,
  ``host:kill``, ``host:features``, ``host-serial:SERIAL:features|get-state|get-serialno``;
- transport switches: ``host:transport:SERIAL``, ``host:transport-any``,
  ``host:tport:serial:SERIAL`` / ``host:tport:any`` (OKAY + 8-byte transport id);
- device services: ``shell:CMD`` (v1: stdout and stderr merged, raw until close),
  ``shell,v2[,raw]:CMD`` (packets: id byte + LE u32 length; 0 stdin, 1 stdout, 2 stderr,
  3 exit, 4 close stdin) and ``sync:`` with ``STAT``, ``LIST``, ``SEND`` (parents
  created, mode and mtime set), ``RECV`` and ``QUIT`` (``DATA``/``DONE``/``OKAY``/``FAIL``
  replies as adbd sends them).

**Sandbox ("chroot by rewriting")**: shell commands really run, with ``/bin/sh -c`` in a
new session, cwd = the sandbox root (adbd's cwd is ``/``), ``PATH`` = the sandbox's
``system/bin`` then the host's ``/usr/bin:/bin``, and ``MELTBENCH_FAKE_PHONE`` = the
sandbox root. Before running, the server rewrites every absolute path that *starts a
token* (preceded by a blank, a quote, ``=`` or the start of the line) and begins with
``/sys``, ``/data``, ``/proc`` or ``/sdcard`` to the same path under the sandbox, so
``cat /sys/class/power_supply/battery/capacity`` reads the fake tree and
``'/data/local/tmp/meltbench/a b;rm -rf x.gguf'`` stays one quoted argument. Other paths
(``/bin/sh``, ``/usr/bin/sha256sum``) are the host's. ``getprop`` and ``dumpsys`` are
stand-in scripts in ``system/bin`` printing hand-written outputs. Sync paths are mapped
whole (``/x`` -> ``SANDBOX/x``). This is not a security boundary: the commands run as the
test's user on the host.

Faults: :meth:`FakeAdbServer.disconnect` makes the device vanish as when a USB cable is
pulled: it leaves the device list, every open connection is closed (the adb server closes
a transport's sockets) and the commands it ran are killed; new requests for it get
``FAIL device 'SERIAL' not found``. :attr:`FakeAdbServer.state` can also be set to
``unauthorized`` or ``offline``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

__all__ = ["FakeAdbServer"]

_ROOTED = ("sys", "data", "proc", "sdcard")
_PATH_RE = re.compile(r"(?<![\w./-])/(" + "|".join(_ROOTED) + r")(?![\w.-])")
_SYNC_DATA_MAX = 64 * 1024


class _Closed(Exception):
    """The client closed the connection."""


class _Conn:
    """One client connection (blocking socket helpers)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _Closed()
            buf += chunk
        return buf

    def read_request(self) -> str:
        size = int(self.read_exact(4).decode("ascii"), 16)
        return self.read_exact(size).decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def okay(self, payload: bytes = b"") -> None:
        self.send(b"OKAY" + payload)

    def block(self, text: str) -> bytes:
        data = text.encode("utf-8")
        return b"%04x" % len(data) + data

    def fail(self, message: str) -> None:
        self.send(b"FAIL" + self.block(message))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


class FakeAdbServer:
    """A threaded adb server on ``127.0.0.1:<free port>`` serving one fake device.

    Args:
        root: the sandbox directory that plays the phone's ``/``.
        serial: the device's serial.
        version: the server version reported (41 = adb 1.0.41, which makes adbutils use
            ``host:tport:serial:``).
        features: adbd features reported (``shell_v2`` enables the v2 shell).

    Attributes:
        state: ``device``, ``unauthorized``, ``offline``, or None (not attached).
        requests: every request received, in order (for assertions).
        port: the listening port (after :meth:`start`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        serial: str = "FAKE0001",
        *,
        version: int = 41,
        features: tuple[str, ...] = ("shell_v2", "cmd", "fixed_push_mkdir"),
    ) -> None:
        self.root = Path(root).resolve()
        if any(c in str(self.root) for c in " '\"\\$`"):
            raise ValueError(f"sandbox path must be shell-safe: {self.root}")
        self.serial = serial
        self.version = version
        self.features = features
        self.state: str | None = "device"
        self.requests: list[str] = []
        self.port = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._stopped = threading.Event()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeAdbServer:
        """Listen on a free loopback port and serve in daemon threads; returns self."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self._sock = sock
        self.port = sock.getsockname()[1]
        threading.Thread(target=self._accept, name="fake-adb-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening, close every connection, kill every command."""
        self._stopped.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._drop_all()

    def __enter__(self) -> FakeAdbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def disconnect(self) -> None:
        """The device vanishes (cable pulled): see the module docstring."""
        self.state = None
        self._drop_all()

    def _drop_all(self) -> None:
        with self._lock:
            conns, procs = list(self._conns), list(self._procs)
        for proc in procs:
            self._kill(proc)
        for conn in conns:
            conn.close()

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            conn = _Conn(client)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # -- host services ---------------------------------------------------------------

    def _device_error(self, serial: str | None) -> str | None:
        """None if the device can be used, else adb's error message."""
        if self.state is None or (serial not in (None, self.serial)):
            return f"device '{serial or ''}' not found" if serial else "no devices/emulators found"
        if self.state == "unauthorized":
            return (
                "device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a "
                "confirmation dialog on your device."
            )
        if self.state != "device":
            return f"device {self.state}"
        return None

    def _devices(self, long: bool) -> str:
        if self.state is None:
            return ""
        if long:
            return (
                f"{self.serial}               {self.state} product:panther model:Pixel_7 "
                "device:panther transport_id:1\n"
            )
        return f"{self.serial}\t{self.state}\n"

    def _serve(self, conn: _Conn) -> None:
        try:
            request = conn.read_request()
            self.requests.append(request)
            self._host(conn, request)
        except (_Closed, OSError, ValueError):
            pass
        finally:
            conn.close()
            with self._lock:
                self._conns.discard(conn)

    def _host(self, conn: _Conn, request: str) -> None:
        if request == "host:version":
            conn.okay(conn.block(f"{self.version:04x}"))
        elif request in ("host:devices", "host:devices-l"):
            conn.okay(conn.block(self._devices(request.endswith("-l"))))
        elif request == "host:kill":
            conn.okay()
        elif request.startswith(("host:transport:", "host:tport:serial:")):
            serial = request.rsplit(":", 1)[1]
            self._switch(conn, serial, tport=request.startswith("host:tport"))
        elif request in ("host:transport-any", "host:tport:any"):
            self._switch(conn, None, tport=request.startswith("host:tport"))
        elif request.startswith(("host-serial:", "host:")):
            if request.startswith("host-serial:"):
                _, serial, service = request.split(":", 2)
            else:
                serial, service = None, request.split(":", 1)[1]
            error = self._device_error(serial)
            if error:
                conn.fail(error)
            elif service == "features":
                conn.okay(conn.block(",".join(self.features)))
            elif service == "get-state":
                conn.okay(conn.block(str(self.state)))
            elif service == "get-serialno":
                conn.okay(conn.block(self.serial))
            else:
                conn.fail(f"unknown host service '{service}'")
        else:
            conn.fail(f"unknown host service '{request}'")

    def _switch(self, conn: _Conn, serial: str | None, *, tport: bool) -> None:
        error = self._device_error(serial)
        if error:
            conn.fail(error)
            return
        conn.okay(struct.pack("<Q", 1) if tport else b"")
        service = conn.read_request()
        self.requests.append(service)
        if service.startswith("shell:"):
            self._shell_v1(conn, service[len("shell:") :])
        elif service.startswith("shell,"):
            options, _, command = service.partition(":")
            if "v2" not in options.split(","):
                conn.fail(f"unsupported shell options {options!r}")
                return
            self._shell_v2(conn, command)
        elif service == "sync:":
            conn.okay()
            self._sync(conn)
        else:
            conn.fail(f"unknown service '{service}'")

    # -- shell -----------------------------------------------------------------------

    def rewrite(self, command: str) -> str:
        """The command with the phone's absolute paths moved into the sandbox."""
        return _PATH_RE.sub(lambda m: f"{self.root}/{m.group(1)}", command)

    def _spawn(self, command: str, *, merge: bool) -> subprocess.Popen[bytes]:
        env = {
            "PATH": f"{self.root}/system/bin:/usr/bin:/bin",
            "MELTBENCH_FAKE_PHONE": str(self.root),
            "HOME": f"{self.root}/data/local/tmp",
            "LANG": "C",
        }
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.rewrite(command)],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL if merge else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge else subprocess.PIPE,
            start_new_session=True,
        )
        with self._lock:
            self._procs.add(proc)
        return proc

    def _reap(self, proc: subprocess.Popen[bytes]) -> int:
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            code = proc.wait()
        with self._lock:
            self._procs.discard(proc)
        return code

    def _shell_v1(self, conn: _Conn, command: str) -> None:
        if not command:
            conn.fail("interactive shells are not supported by the fake")
            return
        conn.okay()
        proc = self._spawn(command, merge=True)
        assert proc.stdout is not None
        try:
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                conn.send(chunk)
        except OSError:
            self._kill(proc)
        finally:
            self._reap(proc)

    def _shell_v2(self, conn: _Conn, command: str) -> None:
        conn.okay()
        proc = self._spawn(command, merge=False)
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None

        def packet(pid: int, data: bytes) -> None:
            conn.send(struct.pack("<BI", pid, len(data)) + data)

        def pump(stream: Any, pid: int) -> None:
            try:
                for chunk in iter(lambda: stream.read1(65536), b""):
                    packet(pid, chunk)
            except OSError:
                self._kill(proc)

        def stdin() -> None:
            try:
                while True:
                    header = conn.read_exact(5)
                    size = struct.unpack("<I", header[1:5])[0]
                    data = conn.read_exact(size) if size else b""
                    if header[0] == 0:
                        proc.stdin.write(data)  # type: ignore[union-attr]
                        proc.stdin.flush()  # type: ignore[union-attr]
                    elif header[0] == 4:
                        proc.stdin.close()  # type: ignore[union-attr]
            except (_Closed, OSError, ValueError):
                if proc.poll() is None:  # the client went away: adbd kills the command
                    self._kill(proc)

        pumps = [
            threading.Thread(target=pump, args=(proc.stdout, 1), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, 2), daemon=True),
        ]
        for t in pumps:
            t.start()
        threading.Thread(target=stdin, daemon=True).start()
        for t in pumps:
            t.join()
        code = self._reap(proc)
        with contextlib.suppress(OSError):
            packet(3, bytes([code & 0xFF]))

    # -- sync ------------------------------------------------------------------------

    def local_path(self, remote: str) -> Path:
        """Where the phone's ``remote`` lives in the sandbox."""
        path = (self.root / remote.lstrip("/")).resolve()
        if path != self.root and self.root not in path.parents:
            raise PermissionError(f"{remote} is outside the fake phone")
        return path

    def _sync(self, conn: _Conn) -> None:
        while True:
            ident = conn.read_exact(4)
            size = struct.unpack("<I", conn.read_exact(4))[0]
            arg = conn.read_exact(size).decode("utf-8", "replace")
            self.requests.append(f"sync:{ident.decode('ascii', 'replace')} {arg}")
            if ident == b"STAT":
                self._stat(conn, arg)
            elif ident == b"LIST":
                self._list(conn, arg)
            elif ident == b"SEND":
                self._send(conn, arg)
            elif ident == b"RECV":
                self._recv(conn, arg)
            elif ident == b"QUIT":
                return
            else:
                self._sync_fail(conn, f"unknown sync command {ident!r}")
                return

    @staticmethod
    def _sync_fail(conn: _Conn, message: str) -> None:
        data = message.encode("utf-8")
        conn.send(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _stat(self, conn: _Conn, remote: str) -> None:
        try:
            st = self.local_path(remote).stat()
            values = (st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
        except OSError:
            values = (0, 0, 0)
        conn.send(b"STAT" + struct.pack("<III", *values))

    def _list(self, conn: _Conn, remote: str) -> None:
        try:
            entries = sorted(os.scandir(self.local_path(remote)), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            name = entry.name.encode("utf-8")
            conn.send(
                b"DENT"
                + struct.pack(
                    "<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(name)
                )
                + name
            )
        conn.send(b"DONE" + bytes(16))

    def _send(self, conn: _Conn, spec: str) -> None:
        remote, _, mode_text = spec.rpartition(",")
        try:
            mode = int(mode_text) & 0o7777
            path = self.local_path(remote)
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "wb")
        except (OSError, ValueError) as exc:
            fh = None
            error = str(exc)
        mtime = 0
        try:
            while True:
                ident = conn.read_exact(4)
                value = struct.unpack("<I", conn.read_exact(4))[0]
                if ident == b"DATA":
                    data = conn.read_exact(value)
                    if fh is not None:
                        fh.write(data)
                elif ident == b"DONE":
                    mtime = value
                    break
                else:
                    raise _Closed()
        finally:
            if fh is not None:
                fh.close()
        if fh is None:
            self._sync_fail(conn, error)
            return
        os.chmod(path, mode)
        if mtime:
            os.utime(path, (mtime, mtime))
        conn.send(b"OKAY" + bytes(4))

    def _recv(self, conn: _Conn, remote: str) -> None:
        try:
            fh = open(self.local_path(remote), "rb")
        except OSError as exc:
            self._sync_fail(conn, exc.strerror or str(exc))
            return
        with fh:
            for chunk in iter(lambda: fh.read(_SYNC_DATA_MAX), b""):
                conn.send(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        conn.send(b"DONE" + bytes(4))
