"""A real OpenSSH server on loopback for the SSH target tests (one per test session).

The fixture makes a temporary directory with a fresh ed25519 host key and user key, an
``authorized_keys``, and an ``sshd_config`` (a free high port on 127.0.0.1, key login only,
the sftp subsystem), starts ``/usr/sbin/sshd -D -e -f CONFIG``, waits for its port, writes
a ``known_hosts`` holding the host key and a ``targets.yaml`` naming the target
``ssh-test``, and stops the server at the end. The "device" is this machine: its Python
(``sys.executable``) creates the venv, so ``--system-site-packages`` reuses this machine's
llama-cpp-python (no build, no network).

Debian's openssh-server must be installed (scripts/test.sh installs it); the tests fail,
never skip, without it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
TARGET = "ssh-test"


@dataclass
class Sshd:
    """A running test sshd."""

    dir: Path
    port: int
    user: str
    host_pub: str
    user_key: Path
    known_hosts: Path
    targets_file: Path
    workdir: Path
    log: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def write_targets(self, path: Path, **entries: dict) -> Path:
        """A targets file with ``entries`` (name -> settings) added to ``ssh-test``."""
        import yaml

        base = {
            TARGET: {
                "url": self.url,
                "identity_file": str(self.user_key),
                "known_hosts": str(self.known_hosts),
                "python": sys.executable,
                "workdir": str(self.workdir),
            }
        }
        base.update(entries)
        path.write_text(yaml.safe_dump({"targets": base}))
        return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meltbench-test", "-f", str(path)],
        check=True,
        timeout=30,
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.fail(
            "the SSH target tests need a real sshd: install openssh-server (scripts/test.sh does)"
        )
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = free_port()
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {d / 'host_key'}",
                f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "StrictModes no",
                "UsePAM no",
                "MaxSessions 50",
                "MaxStartups 50",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = d / "sshd.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=fh, stderr=fh)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not listen on port {port}: {log.read_text()[-2000:]}")
            time.sleep(0.05)
    host_pub = " ".join((d / "host_key.pub").read_text().split()[:2])
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    workdir = d / "device home" / "meltbench work"  # a space: every remote path is quoted
    info = Sshd(
        dir=d,
        port=port,
        user=getpass.getuser(),
        host_pub=host_pub,
        user_key=d / "user_key",
        known_hosts=known,
        targets_file=d / "targets.yaml",
        workdir=workdir,
        log=log,
        proc=proc,
    )
    info.write_targets(info.targets_file)
    yield info
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def targets_env(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> Sshd:
    """``MELTBENCH_TARGETS`` points at the test targets file."""
    monkeypatch.setenv("MELTBENCH_TARGETS", str(sshd.targets_file))
    return sshd


@pytest.fixture
def ssh_target(sshd: Sshd):
    """An open SshTarget on the test sshd (closed afterwards)."""
    from meltbench.targets.config import open_target

    target = open_target(TARGET, sshd.targets_file)
    yield target
    target.close()


@pytest.fixture(scope="session")
def set_up_target(sshd: Sshd) -> dict:
    """``meltbench target setup ssh-test`` with the system site-packages (done once)."""
    from meltbench.targets.setup import setup_target

    return setup_target(TARGET, system_site_packages=True, targets_file=sshd.targets_file)
