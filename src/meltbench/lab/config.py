"""The lab file: which devices exist, how to reach each, and the host it is attached to::

    name: bench-lab
    devices:
      workstation:                  # a device is a target (as in the targets file) ...
        url: local
        host: head                  # ... plus the host (Ray node) it is attached to
      pi5:
        url: ssh://pi@10.0.0.5
        identity_file: ~/.ssh/id_ed25519
        host: head                  # SSH devices can be driven from any host
        class: linux-arm            # default: the target kind (local, ssh, android)
      pixel7:
        url: adb://28031FDH2000EX
        host: lab-2                 # the host whose USB hub the phone is on
        class: android
        env: {MELTBENCH_ANDROID_LLAMA_BENCH: /opt/llama.cpp/android/llama-bench}
        engine_options: {}          # merged into every point run on this device

Every key of a targets-file entry (:mod:`meltbench.targets.config`) is allowed besides
``host``, ``class``, ``env`` and ``engine_options``. On a Ray cluster each host's node is
started with its devices as resources (:func:`ray_start_commands` prints the commands).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError

__all__ = ["Lab", "LabDevice", "device_resource", "load_lab", "ray_start_commands"]

_LAB_KEYS = {"host", "class", "env", "engine_options"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CLASS_OF_KIND = {"local": "local", "ssh": "ssh", "adb": "android"}
DEFAULT_HOST = "head"


def device_resource(name: str) -> str:
    """The Ray custom resource of a device: ``device:<name>`` (one unit per device)."""
    return f"device:{name}"


@dataclass(frozen=True)
class LabDevice:
    """One device of the lab.

    Attributes:
        name: its name (also the ``target`` recorded in its runs).
        kind: ``local``, ``ssh`` or ``adb``.
        host: the host (Ray node) it is attached to.
        device_class: its class, for ``class:NAME`` selectors.
        target_entry: its targets-file entry (``url`` and the SSH settings).
        env: environment variables set around its runs on its host.
        engine_options: engine options merged into every point run on it.
    """

    name: str
    kind: str
    host: str
    device_class: str
    target_entry: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    engine_options: dict[str, Any] = field(default_factory=dict)

    @property
    def resource(self) -> str:
        """Its Ray resource name."""
        return device_resource(self.name)


@dataclass(frozen=True)
class Lab:
    """A parsed lab file: its devices in file order, its source and text hash."""

    name: str
    devices: dict[str, LabDevice]
    source: Path | None = None
    text_sha256: str | None = None

    def targets(self) -> dict[str, dict[str, Any]]:
        """The targets-file mapping of every device (name -> entry)."""
        return {d.name: d.target_entry for d in self.devices.values()}


def _mapping(value: Any, where: str, example: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping, e.g. {example}")
    return dict(value)


def parse_lab(data: Any, source: str) -> Lab:
    """Validate a loaded lab mapping.

    Raises:
        UsageError: ``FILE: devices.NAME: problem`` for the first problem found.
    """
    from meltbench.targets.config import check_target_entry, parse_url

    if (
        not isinstance(data, dict)
        or not isinstance(data.get("devices"), dict)
        or not data["devices"]
    ):
        raise UsageError(f"{source}: a lab file needs 'devices: {{NAME: {{url: ..., host: ...}}}}'")
    unknown = sorted(set(data) - {"name", "description", "devices"})
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(unknown)}; use name, devices")
    devices: dict[str, LabDevice] = {}
    for raw_name, entry in data["devices"].items():
        name = str(raw_name)
        where = f"{source}: devices.{name}"
        if not _NAME_RE.match(name):
            raise UsageError(f"{where}: bad device name; use letters, digits, '_', '.', '-'")
        if isinstance(entry, str):
            entry = {"url": entry}
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: expected {{url: ..., host: ...}}")
        target_entry = {k: v for k, v in entry.items() if k not in _LAB_KEYS}
        check_target_entry(target_entry, f"{where}: ")
        kind = parse_url(str(target_entry["url"])).kind
        env = _mapping(entry.get("env"), f"{where}.env", "{ANDROID_SERIAL: X}")
        devices[name] = LabDevice(
            name=name,
            kind=kind,
            host=str(entry.get("host") or DEFAULT_HOST),
            device_class=str(entry.get("class") or _CLASS_OF_KIND[kind]),
            target_entry=target_entry,
            env={str(k): str(v) for k, v in env.items()},
            engine_options=_mapping(
                entry.get("engine_options"), f"{where}.engine_options", "{flash_attn: true}"
            ),
        )
    return Lab(name=str(data.get("name") or Path(source).stem), devices=devices)


def load_lab(path: str | Path) -> Lab:
    """Read and validate a lab YAML file.

    Raises:
        UsageError: unreadable file, invalid YAML (with its line), or an invalid device.
    """
    from meltbench.sweep.experiment import read_yaml

    p = Path(path)
    text, data, _ = read_yaml(p, "lab file")
    lab = parse_lab(data, str(p))
    return Lab(
        name=lab.name,
        devices=lab.devices,
        source=p.resolve(),
        text_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def ray_start_commands(lab: Lab, address: str = "HEAD_IP:6379") -> dict[str, str]:
    """host -> the ``ray start`` command that attaches its devices (the head host first:
    ``ray start --head``; the others join ``address``)."""
    hosts: dict[str, dict[str, int]] = {}
    for d in lab.devices.values():
        hosts.setdefault(d.host, {})[d.resource] = 1
    out = {}
    for host, resources in hosts.items():
        res = json.dumps(resources, separators=(", ", ": "))
        where = "--head --port=6379" if host == DEFAULT_HOST else f"--address={address}"
        out[host] = f"ray start {where} --resources='{res}'"
    return out
