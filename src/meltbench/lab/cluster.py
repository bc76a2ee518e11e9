"""Ray for the lab: start an embedded instance or join a cluster, check that every device's
resource is there, and the progress board (an actor the tasks tell when they start).

Ray is imported only here and in :mod:`meltbench.lab.execute` (``pip install
meltbench[lab]``). Ray's usage statistics are switched off (``RAY_USAGE_STATS_ENABLED=0``).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from meltbench.errors import UsageError
from meltbench.lab.config import Lab, LabDevice, ray_start_commands

__all__ = ["Board", "connect", "device_resources", "import_ray"]

_CONNECT_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        UsageError: Ray is not installed (with the install command).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise UsageError("meltbench lab needs Ray; pip install 'meltbench[lab]'") from None
    return ray


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"--address {address!r}: use HOST:PORT of the head (ray start --head)")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                 timeout=_CONNECT_TIMEOUT_S).close()  # fmt: skip
    except OSError:
        return False
    return True


def connect(address: str | None, lab: Lab, devices: list[LabDevice]) -> str:
    """Start an embedded Ray instance with every device as a resource of this machine
    (``address`` None), or join the cluster at ``address`` and check that each device's
    resource is present. Returns a description of what it connected to.

    Raises:
        UsageError: the address does not answer (Ray itself would retry for minutes), or
            devices whose resource no node has (with the ``ray start`` commands).
    """
    ray = import_ray()
    quiet: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR",
                             "log_to_driver": False, "namespace": "meltbench-lab"}  # fmt: skip
    if address is None:
        ray.init(resources={d.resource: 1 for d in lab.devices.values()}, **quiet)
        return "embedded Ray instance on this machine"
    if address != "auto" and not _reachable(address):
        raise UsageError(
            f"no Ray head answers at {address}; start one with `ray start --head` there, or "
            "drop --address to run on this machine alone"
        )
    ray.init(address=address, **quiet)
    have = ray.cluster_resources()
    missing = [d for d in devices if have.get(d.resource, 0) < 1]
    if missing:
        ray.shutdown()
        commands = ray_start_commands(lab, address)
        hosts = sorted({d.host for d in missing})
        raise UsageError(
            f"no node of the cluster at {address} has device(s) "
            f"{', '.join(d.name for d in missing)}; on host(s) {', '.join(hosts)} run: "
            + " ; ".join(commands[h] for h in hosts)
            + " (or leave them out with --devices)"
        )
    return f"Ray cluster at {address} ({len(ray.nodes())} nodes)"


def device_resources() -> dict[str, float]:
    """The device resources the live nodes hold now (``device:<name>`` -> units)."""
    ray = import_ray()
    return {k: v for k, v in ray.cluster_resources().items() if k.startswith("device:")}


class Board:
    """Progress board (a Ray actor): tasks report their start, the driver drains it."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, float]] = []

    def started(self, key: str, host: str, t: float) -> None:
        """A pair started on ``host`` at Unix time ``t``."""
        self._events.append((key, host, t))

    def drain(self) -> list[tuple[str, str, float]]:
        """The events since the last drain."""
        events, self._events = self._events, []
        return events
