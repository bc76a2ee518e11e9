"""Find the sensors of a target: load every registered sensor plug-in and probe it.

:func:`probe_sensors` is what ``meltbench sensors`` lists and what a run uses before
sampling. A plug-in that cannot even be imported becomes an unavailable probe with the
import error as its reason, so one broken plug-in never stops a run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from meltbench.errors import UsageError
from meltbench.sensors.base import Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["hottest_reader", "probe_sensors"]


def probe_sensors(
    fs: SysFS | None = None, use: Sequence[str] | None = None
) -> list[tuple[Sensor | None, Probe]]:
    """Probe the registered sensors on the file tree ``fs`` (default: this machine).

    Args:
        fs: the tree to read (``SysFS("/")`` by default).
        use: only these sensor names (validated); None = all registered sensors.

    Returns:
        ``(sensor, probe)`` pairs in registry order; ``sensor`` is None when the plug-in
        could not be imported. Unavailable sensors are included (``probe.available`` is
        False, with the reason).

    Raises:
        UsageError: a name in ``use`` is not a registered sensor.
    """
    from meltbench.registry import SENSORS

    fs = fs if fs is not None else SysFS("/")
    names = SENSORS.ordered_names()
    if use is not None:
        unknown = [n for n in use if n not in names]
        if unknown:
            raise UsageError(
                f"unknown sensor {', '.join(map(repr, unknown))}; choose from: {', '.join(names)}"
                " (or 'none')"
            )
        names = [n for n in names if n in use]
    found: list[tuple[Sensor | None, Probe]] = []
    for name in names:
        try:
            cls = SENSORS.load(name)
            sensor = cls(fs)
        except Exception as exc:  # a broken plug-in must not stop the run
            found.append((None, Probe(name, False, f"sensor plug-in failed to load: {exc}")))
            continue
        try:
            probe = sensor.probe()
        except Exception as exc:  # probe() must not raise; report if one does anyway
            probe = Probe(name, False, f"probe failed: {type(exc).__name__}: {exc}")
        found.append((sensor, probe))
    return found


def hottest_reader(
    probed: Sequence[tuple[Sensor | None, Probe]],
) -> Callable[[], float | None] | None:
    """A function returning the hottest current temperature (C) over every available
    temperature channel of ``probed``; None when there is no such channel."""
    picks: list[tuple[Sensor, list[int]]] = []
    for sensor, probe in probed:
        if sensor is None or not probe.available:
            continue
        idx = [i for i, c in enumerate(probe.channels) if c.kind == "temperature"]
        if idx:
            picks.append((sensor, idx))
    if not picks:
        return None

    def read() -> float | None:
        hottest: float | None = None
        for sensor, idx in picks:
            try:
                values = sensor.read()
            except Exception:
                continue
            for i in idx:
                v = values[i]
                if v is not None and (hottest is None or v > hottest):
                    hottest = v
        return hottest

    return read
