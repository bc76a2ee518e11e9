"""The sensor plug-in contract: ``probe()`` says what is there (and why not), ``read()``
takes one reading of every channel.

A *sensor* is one source of readings on a target (RAPL through powercap, the thermal
zones, cpufreq, NVML, a battery...). It exposes *channels*: one value each, in the
channel's unit. The sampler (:mod:`meltbench.sensors.sampler`) calls ``read()`` at a fixed
rate beside the worker and timestamps each reading with ``time.perf_counter_ns``, the
clock of the worker's token timestamps, so readings can be attributed to the load,
prefill and decode windows.

Kinds and units (fixed; the unit is part of every derived metric name):

============  ======  ==========================================================
kind          unit    meaning of a value
============  ======  ==========================================================
energy        J       a cumulative counter (may wrap: ``Channel.wrap_j``)
power         W       instantaneous power (integrated over time when no counter)
temperature   C       degrees Celsius
frequency     MHz     current clock frequency
memory        bytes   memory in use (e.g. GPU memory)
============  ======  ==========================================================

A sensor that is absent says so in its :class:`Probe` (``available=False`` and a
one-line ``reason`` that tells the user what is missing and, where possible, how to
fix it). Nothing is ever reported as 0 for "not measured": absent means None (the
convention of ml-energy/zeus).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from meltbench.sensors.sysfs import SysFS

__all__ = ["UNITS", "Channel", "Kind", "Probe", "Sensor"]

Kind = Literal["energy", "power", "temperature", "frequency", "memory"]

#: unit of each kind of channel
UNITS: dict[str, str] = {
    "energy": "J",
    "power": "W",
    "temperature": "C",
    "frequency": "MHz",
    "memory": "bytes",
}


@dataclass(frozen=True)
class Channel:
    """One measured quantity of a sensor.

    Attributes:
        name: stable id, ``"<sensor>:<what>"``, e.g. ``"rapl:package-0"``,
            ``"thermal:x86_pkg_temp"``, ``"cpufreq:cpu3"``, ``"ina3221:VDD_IN"``.
        kind: see the module table; fixes the unit.
        label: human description (``"CPU package 0 (RAPL)"``).
        scope: what the channel covers: ``"board"`` (the whole device: Jetson's input
            rail, a phone's battery, RAPL psys), ``"cpu-package"``, ``"dram"``,
            ``"gpu"``, ``"cpu-core"``, ``"soc"``, ``"rail"`` (one rail of many) ...
        wrap_j: for energy counters, the value in joules at which the counter wraps
            back to 0 (RAPL ``max_energy_range_uj``); None if it does not wrap.
        total: True if this channel alone measures the whole device's draw, so no other
            channel may be added to it (Jetson ``VDD_IN``, a battery, RAPL psys).
        overlaps: names of channels this one already contains (RAPL ``core`` is inside
            ``package``), so they are never summed together.
    """

    name: str
    kind: Kind
    label: str = ""
    scope: str = ""
    wrap_j: float | None = None
    total: bool = False
    overlaps: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        """Unit of the channel's values (``J``, ``W``, ``C``, ``MHz``, ``bytes``)."""
        return UNITS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (stored with every run that used it)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "unit": self.unit,
            "label": self.label,
            "scope": self.scope,
            "wrap_j": self.wrap_j,
            "total": self.total,
            "overlaps": list(self.overlaps),
        }


@dataclass(frozen=True)
class Probe:
    """What a sensor found on the target.

    Attributes:
        sensor: the sensor's name (``"rapl"``).
        available: True if ``read()`` will give values.
        reason: one line: what was found, or why the sensor is unusable and how to fix
            it (``"no /sys/class/powercap/intel-rapl: not an Intel/AMD CPU with RAPL, or
            a VM that hides it"``).
        channels: the channels ``read()`` returns, in order (empty when unavailable).
        details: facts worth recording (driver, device name, unit conventions found).
    """

    sensor: str
    available: bool
    reason: str
    channels: tuple[Channel, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "sensor": self.sensor,
            "available": self.available,
            "reason": self.reason,
            "channels": [c.to_dict() for c in self.channels],
            "details": dict(self.details),
        }


class Sensor(ABC):
    """Base class of sensor plug-ins.

    Subclasses set ``name`` and ``kinds``, implement :meth:`probe` and :meth:`read`,
    and may override :meth:`close`. ``probe()`` is called once before sampling and must
    not raise: every failure becomes ``Probe(available=False, reason=...)``. ``read()``
    is called from the sampler thread at up to 100 Hz and must be cheap (open files once
    in ``probe()``; see :meth:`SysFS.reader`).

    Args:
        fs: the file tree to read (default: this machine's ``/``).
    """

    name: ClassVar[str] = ""
    #: kinds of channels this sensor can give (for listings before probing)
    kinds: ClassVar[tuple[Kind, ...]] = ()

    def __init__(self, fs: SysFS | None = None) -> None:
        self.fs = fs if fs is not None else SysFS("/")
        self._closers: list[Callable[[], None]] = []

    @abstractmethod
    def probe(self) -> Probe:
        """Find the sensor's channels on the target; never raises."""

    @abstractmethod
    def read(self) -> Sequence[float | None]:
        """One reading of every channel of the last :meth:`probe`, in channel order.

        Values are in the channel's unit (J, W, C, MHz, bytes). A channel that cannot be
        read this time gives None for this reading; the sampler keeps going.
        """

    def guarded_probe(self, find: Callable[[], Probe], failure: str) -> Probe:
        """Run ``find()`` from a clean state (files of an earlier probe closed); any
        exception becomes an unavailable probe whose reason starts with ``failure``, so
        :meth:`probe` keeps its promise never to raise."""
        self.close()
        try:
            return find()
        except Exception as exc:
            self.close()
            return Probe(self.name, False, f"{failure}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Release what the sensor holds: every file registered in ``_closers`` (by
        :meth:`probe`); subclasses with other handles (NVML) extend this."""
        for close in self._closers:
            try:
                close()
            except OSError:
                pass
        self._closers = []
