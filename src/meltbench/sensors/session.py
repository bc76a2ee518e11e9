"""The sensors of one run, host side: probe, read the device state, measure the idle
baseline, then hand the available sensors to the sampler that runs beside the worker.

Order of a run (:func:`meltbench.api.execute`)::

    open_session(spec.sensors)     probe every sensor, read device state,
                                   sample idle_s seconds with nothing running (baseline)
    run_worker(..., sensors=session.available, sensor_hz=spec.sensors.hz)
    analyze_sensors(...)           attribute energy to load / prefill / decode windows
    session.close()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meltbench.config import SensorSpec
from meltbench.sensors.base import Probe, Sensor
from meltbench.sensors.sysfs import SysFS

__all__ = ["SensorSession", "open_session"]

_BASELINE_KINDS = ("energy", "power", "temperature")


@dataclass
class SensorSession:
    """Probed sensors, device state and idle baseline of a run.

    Attributes:
        fs: the file tree the sensors read.
        probed: every sensor that was asked for, with its probe (available or not).
        available: the ``(sensor, probe)`` pairs that will be sampled.
        device_state: from :func:`meltbench.sensors.device_state.read_device_state`.
        baseline: readings of the idle baseline (a ``SensorSeries``), or None when no
            energy/power/temperature sensor is available or ``idle_s`` is 0.
        idle_s: the baseline length asked for, seconds.
    """

    fs: SysFS
    probed: list[tuple[Sensor | None, Probe]] = field(default_factory=list)
    available: list[tuple[Sensor, Probe]] = field(default_factory=list)
    device_state: dict[str, Any] = field(default_factory=dict)
    baseline: Any = None
    idle_s: float = 0.0

    def close(self) -> None:
        """Close every sensor (files, NVML handles)."""
        for sensor, _ in self.probed:
            if sensor is not None:
                try:
                    sensor.close()
                except Exception:
                    pass


def open_session(spec: SensorSpec, *, baseline: bool = True) -> SensorSession:
    """Probe the sensors of ``spec`` on this machine and measure the idle baseline.

    Args:
        spec: the run's sensor settings (``use``, ``hz``, ``idle_s``, ``root``).
        baseline: measure the idle baseline (``spec.idle_s`` seconds at ``spec.hz``)
            when an energy, power or temperature channel is available.

    Raises:
        UsageError: an unknown sensor name in ``spec.use``, or a ``root`` that is not a
            directory.
    """
    from pathlib import Path

    from meltbench.errors import UsageError
    from meltbench.sensors.device_state import read_device_state
    from meltbench.sensors.discover import probe_sensors

    if not Path(spec.root).is_dir():
        raise UsageError(f"--sysfs-root {spec.root!r} is not a directory; give a sysfs tree")
    fs = SysFS(spec.root)
    use = None if spec.use is None else [n for n in spec.use if n != "none"]
    session = SensorSession(fs=fs, idle_s=spec.idle_s)
    session.probed = probe_sensors(fs, use)
    session.available = [(s, p) for s, p in session.probed if s is not None and p.available]
    try:
        session.device_state = read_device_state(fs)
    except Exception as exc:  # device state is a record, never a reason to fail a run
        session.device_state = {"notes": [f"device state unreadable: {exc}"]}
    kinds = {c.kind for _, p in session.available for c in p.channels}
    if baseline and spec.idle_s > 0 and kinds & set(_BASELINE_KINDS):
        from meltbench.sensors.sampler import sample_for

        session.baseline = sample_for(session.available, spec.idle_s, spec.hz)
    return session
