"""Temperature and clock frequency over measurement windows (pure: no clock, no file).

The readings are a :class:`~meltbench.sensors.sampler.SensorSeries`; a frequency's mean
over a window is the time-weighted mean of the piecewise-linear curve through its
readings (:func:`meltbench.measure.energy.interpolate`, the energy module's integral).
"""

from __future__ import annotations

import bisect
from typing import Any

from meltbench.measure.energy import _check_window, _integral, interpolate
from meltbench.sensors.sampler import SensorSeries

__all__ = ["frequency_stats", "temperature_stats"]


def _rows(series: SensorSeries, start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
    lo = 0 if start_ns is None else bisect.bisect_left(series.t_ns, start_ns)
    hi = len(series.t_ns) if end_ns is None else bisect.bisect_right(series.t_ns, end_ns)
    return lo, hi


def temperature_stats(
    series: SensorSeries, start_ns: int | None = None, end_ns: int | None = None
) -> dict[str, Any]:
    """The hottest reading over every temperature channel, C.

    Args:
        series: the readings.
        start_ns, end_ns: only rows in this range (default: all rows).

    Returns:
        ``{"temp_max_c": C or None, "temp_max_channel": name or None,
        "by_channel": {name: max C or None}}``; None when no temperature was read.
    """
    lo, hi = _rows(series, start_ns, end_ns)
    by_channel: dict[str, float | None] = {}
    best: float | None = None
    best_name: str | None = None
    for c, column in zip(series.channels, series.values, strict=True):
        if c.kind != "temperature":
            continue
        readings = [v for v in column[lo:hi] if v is not None]
        top = max(readings) if readings else None
        by_channel[c.name] = top
        if top is not None and (best is None or top > best):
            best, best_name = top, c.name
    return {"temp_max_c": best, "temp_max_channel": best_name, "by_channel": by_channel}


def frequency_stats(
    series: SensorSeries, start_ns: int, end_ns: int
) -> dict[str, dict[str, float | None]]:
    """Clock frequencies over a window, MHz, per frequency channel.

    Returns:
        ``{name: {"mean_mhz", "min_mhz", "max_mhz"}}``: the time-weighted mean of the
        piecewise-linear curve over the window (the interpolated value for a window of
        no duration; None if the readings do not cover it), and the lowest and highest
        reading inside the window (None if there is none).

    Raises:
        ValueError: if ``end_ns < start_ns``.
    """
    _check_window(start_ns, end_ns)
    lo, hi = _rows(series, start_ns, end_ns)
    out: dict[str, dict[str, float | None]] = {}
    for c, column in zip(series.channels, series.values, strict=True):
        if c.kind != "frequency":
            continue
        if end_ns > start_ns:
            area = _integral(series.t_ns, column, start_ns, end_ns)
            mean = None if area is None else area / (end_ns - start_ns)
        else:
            mean = interpolate(series.t_ns, column, start_ns)
        inside = [v for v in column[lo:hi] if v is not None]
        out[c.name] = {
            "mean_mhz": mean,
            "min_mhz": min(inside) if inside else None,
            "max_mhz": max(inside) if inside else None,
        }
    return out
