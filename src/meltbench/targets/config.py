"""Naming targets: URLs (``local``, ``ssh://[user@]host[:port]``, ``adb://SERIAL``) and the
targets file.

The targets file is YAML; it is, in order: the ``targets_file`` argument (``--targets
FILE``), the ``MELTBENCH_TARGETS`` environment variable, or
``$XDG_CONFIG_HOME/meltbench/targets.yaml`` (default ``~/.config/meltbench/targets.yaml``)::

    targets:
      pi:
        url: ssh://pi@10.0.0.5          # or ssh://[fe80::1%eth0]:2222, adb://SERIAL, local
        identity_file: ~/.ssh/id_ed25519  # default: the SSH agent and ~/.ssh/id_* keys
        known_hosts: ~/.ssh/known_hosts   # default; host keys are always verified
        accept_new_host_key: false        # true: accept (and record) an unknown host key once
        python: python3                   # the device interpreter that creates the venv
        workdir: ~/.cache/meltbench-target  # meltbench-owned; `meltbench target cleanup` removes it
        venv: ~/.cache/meltbench-target/venv  # default: <workdir>/venv
        connect_timeout_s: 10
        password_env: PI_PASSWORD         # optional: the *name* of an environment variable

Passwords are never read from the file or written anywhere: ``password_env`` names an
environment variable that holds one (key authentication is the recommended way).

The CLI's ``--targets FILE`` and ``--accept-new-host-key`` set process-wide defaults
through :func:`configure`, so that :func:`meltbench.api.run` with ``target="pi"`` finds
the same file.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meltbench.errors import UsageError

if TYPE_CHECKING:
    from meltbench.targets.base import Target

__all__ = [
    "DEFAULT_SSH_PORT",
    "TargetSpec",
    "check_target_entry",
    "configure",
    "default_targets_file",
    "load_targets_file",
    "open_target",
    "parse_target",
    "parse_url",
]

DEFAULT_SSH_PORT = 22
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
_FILE_KEYS = {
    "url",
    "identity_file",
    "known_hosts",
    "accept_new_host_key",
    "python",
    "workdir",
    "venv",
    "connect_timeout_s",
    "password_env",
    "description",
}
_URL_HINT = "use local, ssh://[user@]host[:port], adb://SERIAL, or a name from the targets file"

# process-wide defaults set by the CLI (--targets, --accept-new-host-key)
_defaults: dict[str, Any] = {"targets_file": None, "accept_new_host_key": False}


def configure(
    *, targets_file: str | os.PathLike[str] | None = None, accept_new_host_key: bool | None = None
) -> None:
    """Set process-wide defaults (what the CLI's ``--targets`` and ``--accept-new-host-key``
    mean for every target opened afterwards). ``None`` leaves a setting unchanged."""
    if targets_file is not None:
        _defaults["targets_file"] = str(targets_file)
    if accept_new_host_key is not None:
        _defaults["accept_new_host_key"] = bool(accept_new_host_key)


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target: where it is and how to reach it. Holds no secrets.

    Attributes:
        name: what the user typed (``local``, ``ssh://pi@host``, or a name in the file).
        kind: ``local``, ``ssh`` or ``adb``.
        url: canonical URL (``ssh://user@host:port``; user omitted if not given).
        host, port, user: SSH address (``port`` None = 22 or ``~/.ssh/config``; ``user``
            None = ``~/.ssh/config`` or the local user name).
        serial: adb serial (``adb://SERIAL``).
        identity_file: private key file (``~`` expanded); None = agent and default keys.
        known_hosts: known_hosts file; None = ``~/.ssh/known_hosts`` (plus
            ``/etc/ssh/ssh_known_hosts``).
        accept_new_host_key: accept an unknown host key and append it to known_hosts
            (OpenSSH's ``StrictHostKeyChecking=accept-new``); a *changed* key is always
            refused.
        python: the device interpreter used to create the venv (default ``python3``).
        workdir: meltbench-owned directory on the device (None = the target's default,
            ``~/.cache/meltbench-target`` over SSH).
        venv: the device venv (None = ``<workdir>/venv``).
        connect_timeout_s: TCP connect and SSH handshake limit, seconds.
        password_env: name of an environment variable holding the SSH password (the
            password itself is never stored).
        source: the targets file the name came from, or None for a URL.
    """

    name: str
    kind: str
    url: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    serial: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    python: str | None = None
    workdir: str | None = None
    venv: str | None = None
    connect_timeout_s: float = 10.0
    password_env: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no secrets: ``password_env`` is a variable name)."""
        return asdict(self)


def default_targets_file() -> Path:
    """``$MELTBENCH_TARGETS``, else ``$XDG_CONFIG_HOME/meltbench/targets.yaml`` (default
    ``~/.config/meltbench/targets.yaml``)."""
    env = os.environ.get("MELTBENCH_TARGETS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "meltbench" / "targets.yaml"


def _targets_path(targets_file: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The targets file to use and whether it was named explicitly."""
    if targets_file is not None:
        return Path(targets_file).expanduser(), True
    if _defaults["targets_file"]:
        return Path(_defaults["targets_file"]).expanduser(), True
    explicit = bool(os.environ.get("MELTBENCH_TARGETS"))
    return default_targets_file(), explicit


def parse_url(text: str) -> TargetSpec:
    """Parse ``local``, ``ssh://[user@]host[:port]`` (IPv6 as ``[addr]``) or ``adb://SERIAL``.

    Raises:
        UsageError: not one of these forms (one line, with the accepted forms).
    """
    text = text.strip()
    if text == "local":
        return TargetSpec(name=text, kind="local", url="local")
    if text.startswith("adb://"):
        serial = text[len("adb://") :].rstrip("/")
        if any(c.isspace() or c in "/'\";|&$`\\" for c in serial):
            raise UsageError(f"bad adb target {text!r}: use adb://SERIAL (see `adb devices`)")
        return TargetSpec(name=text, kind="adb", url=text, serial=serial)
    if not text.startswith("ssh://"):
        raise UsageError(f"unknown target {text!r}; {_URL_HINT}")
    rest = text[len("ssh://") :].rstrip("/")
    bad = f"bad ssh target {text!r}: use ssh://[user@]host[:port] (IPv6: ssh://user@[::1]:22)"
    user: str | None = None
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        if not _USER_RE.match(user):
            raise UsageError(bad)
    port: int | None = None
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise UsageError(bad)
        host, tail = rest[1:end], rest[end + 1 :]
        if not host or not re.match(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$", host):
            raise UsageError(bad)
        if tail:
            if not tail.startswith(":"):
                raise UsageError(bad)
            port_text = tail[1:]
        else:
            port_text = None
    else:
        host, sep, port_text_ = rest.partition(":")
        port_text = port_text_ if sep else None
        if not host or not _HOST_RE.match(host):
            raise UsageError(bad)
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"bad port in {text!r}: use a number from 1 to 65535")
        port = int(port_text)
    return TargetSpec(
        name=text, kind="ssh", url=_ssh_url(user, host, port), host=host, port=port, user=user
    )


def _ssh_url(user: str | None, host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"ssh://{user + '@' if user else ''}{shown}{f':{port}' if port else ''}"


def load_targets_file(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The ``targets`` mapping of a targets file (name -> settings).

    Raises:
        UsageError: unreadable file, not YAML, no ``targets`` mapping, a bad name, an
            entry without ``url`` or with an unknown key (one line naming the fix).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read targets file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"targets file {path} is not valid YAML{where}; fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("targets", {}), dict):
        raise UsageError(
            f"targets file {path} must hold a mapping 'targets: {{NAME: {{url: ...}}}}'"
        )
    targets = data.get("targets") or {}
    out: dict[str, dict[str, Any]] = {}
    for name, entry in targets.items():
        name = str(name)
        if not _NAME_RE.match(name) or name == "local":
            raise UsageError(
                f"targets file {path}: bad target name {name!r}; use letters, digits, '_', "
                "'.', '-' (and not 'local')"
            )
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            raise UsageError(f"targets file {path}: target {name!r} needs a 'url: ssh://...'")
        check_target_entry(entry, f"targets file {path}: target {name!r}: ")
        out[name] = dict(entry)
    return out


def check_target_entry(entry: dict[str, Any], where: str) -> None:
    """Check one targets-file entry: a ``url``, no password, only known keys.

    Args:
        where: the prefix of error messages (``"targets file F: target 'pi': "``).

    Raises:
        UsageError: what is wrong, naming the fix.
    """
    if not entry.get("url"):
        raise UsageError(f"{where}needs a 'url: ssh://...' (or local, adb://SERIAL)")
    if "password" in entry:
        raise UsageError(
            f"{where}passwords are not read from files; use a key (identity_file) or "
            "password_env: VARIABLE_NAME"
        )
    unknown = sorted(set(entry) - _FILE_KEYS)
    if unknown:
        raise UsageError(
            f"{where}unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FILE_KEYS))}"
        )


def _from_entry(name: str, entry: dict[str, Any], source: Path) -> TargetSpec:
    spec = parse_url(str(entry["url"]))

    def path_of(key: str) -> str | None:
        value = entry.get(key)
        return str(Path(str(value)).expanduser()) if value else None

    accept = entry.get("accept_new_host_key", False)
    if not isinstance(accept, bool):
        raise UsageError(
            f"targets file {source}: target {name!r}: accept_new_host_key must be true or false"
        )
    timeout = entry.get("connect_timeout_s", 10.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise UsageError(
            f"targets file {source}: target {name!r}: connect_timeout_s must be a number > 0"
        )
    return replace(
        spec,
        name=name,
        identity_file=path_of("identity_file"),
        known_hosts=path_of("known_hosts"),
        accept_new_host_key=accept,
        python=str(entry["python"]) if entry.get("python") else None,
        workdir=str(entry["workdir"]) if entry.get("workdir") else None,
        venv=str(entry["venv"]) if entry.get("venv") else None,
        connect_timeout_s=float(timeout),
        password_env=str(entry["password_env"]) if entry.get("password_env") else None,
        source=str(source),
    )


def list_target_specs(
    targets_file: str | os.PathLike[str] | None = None,
) -> list[TargetSpec]:
    """Every target of the targets file (none if there is no file and none was named).

    Raises:
        UsageError: a named file is missing, or the file is invalid.
    """
    path, explicit = _targets_path(targets_file)
    if not path.is_file():
        if explicit:
            raise UsageError(f"targets file {path} does not exist; create it or fix --targets")
        return []
    return [_from_entry(n, e, path) for n, e in load_targets_file(path).items()]


def parse_target(
    text: str,
    targets_file: str | os.PathLike[str] | None = None,
    *,
    accept_new_host_key: bool | None = None,
) -> TargetSpec:
    """Parse a target given as a URL or as a name from the targets file.

    Args:
        text: ``local``, ``ssh://...``, ``adb://...`` or a name.
        targets_file: the targets file (default: see the module docstring).
        accept_new_host_key: override the file's setting (``--accept-new-host-key``);
            None = the file's setting or the :func:`configure` default.

    Raises:
        UsageError: a malformed URL, an unknown name (listing the known ones), or an
            invalid targets file.
    """
    text = (text or "").strip()
    if not text:
        raise UsageError(f"empty target; {_URL_HINT}")
    if "://" in text or text == "local":
        spec = parse_url(text)
    else:
        if not _NAME_RE.match(text):
            raise UsageError(f"unknown target {text!r}; {_URL_HINT}")
        path, explicit = _targets_path(targets_file)
        if not path.is_file():
            if explicit:
                raise UsageError(
                    f"unknown target {text!r}: targets file {path} does not exist; create it "
                    "or fix --targets / MELTBENCH_TARGETS"
                )
            raise UsageError(
                f"unknown target {text!r}: no targets file at {path}; add "
                f"'targets: {{{text}: {{url: ssh://user@host}}}}' there or pass "
                "--target ssh://user@host"
            )
        entries = load_targets_file(path)
        if text not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise UsageError(
                f"unknown target {text!r} in {path} (known: {known}); add it there or pass "
                "--target ssh://user@host"
            )
        spec = _from_entry(text, entries[text], path)
    if accept_new_host_key is None:
        accept_new_host_key = spec.accept_new_host_key or bool(_defaults["accept_new_host_key"])
    return replace(spec, accept_new_host_key=accept_new_host_key)


def open_target(
    spec_or_text: TargetSpec | str,
    targets_file: str | os.PathLike[str] | None = None,
    *,
    accept_new_host_key: bool | None = None,
    connect: bool = True,
) -> Target:
    """Open a target (and, for SSH, connect and verify the host key).

    Args:
        spec_or_text: a :class:`TargetSpec` or what :func:`parse_target` accepts.
        targets_file: the targets file for names.
        accept_new_host_key: see :func:`parse_target`.
        connect: connect now (default), so that an unreachable host fails here.

    Raises:
        UsageError: bad target text or targets file.
        TargetError: unreachable, refused host key (:class:`~meltbench.targets.ssh.HostKeyError`)
            or failed authentication.
    """
    if isinstance(spec_or_text, TargetSpec):
        spec = spec_or_text
        if accept_new_host_key is not None:
            spec = replace(spec, accept_new_host_key=accept_new_host_key)
    else:
        spec = parse_target(spec_or_text, targets_file, accept_new_host_key=accept_new_host_key)
    from meltbench.registry import TARGETS

    return TARGETS.load(spec.kind).from_spec(spec, connect=connect)
