"""From a run's sensor readings to energy, power, temperature and frequency metrics (pure).

Inputs: the sensor series sampled beside the worker, the idle baseline sampled before
it, and the worker's repetitions (token timestamps on the same clock). For every timed
repetition the energy of its prefill, decode and whole-request windows is attributed
with :func:`meltbench.measure.energy.rep_energy_metrics`; those per-repetition values
are summarized like every other metric (n, mean, median, CI...). Load energy, the
hottest temperature and peak GPU memory are one value per run.

Nothing here reads a clock or a file, so every number can be checked exactly in tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meltbench.measure.energy import (
    Window,
    idle_power_w,
    rep_energy_metrics,
    unwrap_counter,
    window_energy,
)
from meltbench.measure.energy_channels import select_energy_channels
from meltbench.measure.thermal import frequency_stats, temperature_stats
from meltbench.measure.warnings import BenchWarning
from meltbench.sensors.base import Probe
from meltbench.sensors.sampler import SensorSeries

__all__ = ["SensorAnalysis", "analyze_sensors", "power_series", "sustain_channels"]

#: a window shorter than this many sampling periods gets a ``short_energy_window`` warning
MIN_PERIODS_PER_WINDOW = 2.0


@dataclass
class SensorAnalysis:
    """What the sensors add to a run.

    Attributes:
        per_rep: metric name -> one value per timed repetition (``energy_j_decode``...).
        single: metric name -> one value for the run (``energy_j_load``,
            ``temp_max_c``, ``temp_idle_c``, ``peak_gpu_memory_bytes``).
        info: stored as ``RunResult.sensors``.
        warnings: typed warnings (charging battery, windows shorter than the sampling
            period, slow sampling).
    """

    per_rep: dict[str, list[float]] = field(default_factory=dict)
    single: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    warnings: list[BenchWarning] = field(default_factory=list)


def _memory_peak(series: SensorSeries) -> float | None:
    peaks = [
        max(v for v in series.values[i] if v is not None)
        for i, c in enumerate(series.channels)
        if c.kind == "memory" and any(v is not None for v in series.values[i])
    ]
    return float(sum(peaks)) if peaks else None


def analyze_sensors(
    probes: Sequence[Probe | dict[str, Any]],
    series: SensorSeries | None,
    baseline: SensorSeries | None,
    reps: Sequence[dict[str, Any]],
    n_prompt: int,
    *,
    hz: float,
    load_window: tuple[int, int] | None = None,
    idle_s: float = 0.0,
    device_state: dict[str, Any] | None = None,
    achieved_hz: float | None = None,
) -> SensorAnalysis:
    """Energy per window, temperatures and frequencies of one run.

    Args:
        probes: every probed sensor (``Probe`` or its dict), recorded with its reason.
        series: readings during the run (None when no sensor was available).
        baseline: readings of the idle baseline before the run (None = not measured;
            then no ``_net`` values).
        reps: the worker's ``rep`` events (``kind``, ``t_start_ns``, ``token_ns``).
        n_prompt: prompt tokens per request.
        hz: requested sampling rate, Hz.
        load_window: ``(t_load_start_ns, t_load_end_ns)`` of model loading.
        idle_s: baseline length asked for, seconds.
        device_state: the device state read before the run (charging invalidates
            battery energy).
        achieved_hz: rate the sampler reached.
    """
    out = SensorAnalysis()
    info: dict[str, Any] = {
        "hz": hz,
        "achieved_hz": achieved_hz,
        "probes": [p if isinstance(p, dict) else p.to_dict() for p in probes],
    }
    info["available"] = [p["sensor"] for p in info["probes"] if p.get("available")]
    out.info = info
    if series is None or not series.channels:
        info["energy_method"] = None
        return out

    channels = list(series.channels)
    energy_channels, how = select_energy_channels(channels)
    info["energy_channels"] = [c.name for c in energy_channels]
    info["energy_method"] = how if energy_channels else None

    idle_w = None
    if baseline is not None and baseline.channels:
        idle_w = idle_power_w(baseline, energy_channels) if energy_channels else None
        idle_temps = temperature_stats(baseline)
        info["idle"] = {
            "seconds": idle_s,
            "power_w": idle_w,
            "temp_max_c": idle_temps.get("temp_max_c"),
            "temp_c_by_channel": idle_temps.get("by_channel"),
        }
        if idle_temps.get("temp_max_c") is not None:
            out.single["temp_idle_c"] = idle_temps["temp_max_c"]
    else:
        info["idle"] = None

    if energy_channels:
        for rep in reps:
            if rep.get("kind") != "timed" or not rep.get("token_ns"):
                continue
            values = rep_energy_metrics(
                series, rep["t_start_ns"], rep["token_ns"], n_prompt, idle_w, energy_channels
            )
            for name, value in values.items():
                if value is not None:
                    out.per_rep.setdefault(name, []).append(value)
        if load_window is not None:
            load_j, _ = window_energy(
                series, Window("load", load_window[0], load_window[1], None), energy_channels
            )
            if load_j is not None:
                out.single["energy_j_load"] = load_j

    temps = temperature_stats(series)
    if temps.get("temp_max_c") is not None:
        out.single["temp_max_c"] = temps["temp_max_c"]
        info["temp_max_channel"] = temps.get("temp_max_channel")
        info["temp_max_c_by_channel"] = temps.get("by_channel")

    cpu_freqs: list[float] = []
    for rep in reps:
        if rep.get("kind") != "timed" or len(rep.get("token_ns") or ()) < 2:
            continue
        stats = frequency_stats(series, rep["token_ns"][0], rep["token_ns"][-1])
        means = [
            s["mean_mhz"]
            for name, s in stats.items()
            if name.startswith("cpufreq:") and s.get("mean_mhz") is not None
        ]
        if means:
            cpu_freqs.append(sum(means) / len(means))
    if cpu_freqs:
        out.per_rep["cpu_freq_mhz_decode"] = cpu_freqs

    gpu_mem = _memory_peak(series)
    if gpu_mem is not None:
        out.single["peak_gpu_memory_bytes"] = gpu_mem

    out.warnings = _warnings(energy_channels, reps, hz, achieved_hz, device_state or {})
    out.warnings += _stuck_counter_warnings(series, energy_channels)
    if any(w.code in ("charging", "energy_counter_stuck") for w in out.warnings):
        info["energy_valid"] = False
    elif energy_channels:
        info["energy_valid"] = True
    info["series"] = series.to_dict()
    if baseline is not None:
        info["baseline_series"] = baseline.to_dict()
    return out


def _warnings(
    energy_channels: Sequence[Any],
    reps: Sequence[dict[str, Any]],
    hz: float,
    achieved_hz: float | None,
    state: dict[str, Any],
) -> list[BenchWarning]:
    warns: list[BenchWarning] = []
    on_battery_energy = any(getattr(c, "name", "").startswith("battery:") for c in energy_channels)
    if state.get("charging") and on_battery_energy:
        warns.append(
            BenchWarning(
                "charging",
                "the battery was charging: its current and voltage do not measure the "
                "device's draw, so the energy figures of this run are invalid",
                "unplug the charger (or disable charging, e.g. `dumpsys battery unplug` "
                "on Android) and run again",
            )
        )
    timed = [r for r in reps if r.get("kind") == "timed" and r.get("token_ns")]
    if energy_channels and timed:
        shortest = min(r["token_ns"][0] - r["t_start_ns"] for r in timed) / 1e9
        period = 1.0 / hz
        if shortest < MIN_PERIODS_PER_WINDOW * period:
            warns.append(
                BenchWarning(
                    "short_energy_window",
                    f"the prefill window ({shortest * 1e3:.0f} ms) is shorter than "
                    f"{MIN_PERIODS_PER_WINDOW:g} sampling periods at {hz:g} Hz: its energy "
                    "is interpolated between readings",
                    "raise --sensor-hz (up to 100) or --n-prompt",
                    "energy_j_prefill",
                )
            )
    if achieved_hz is not None and achieved_hz < 0.5 * hz:
        warns.append(
            BenchWarning(
                "sensor_sampling_slow",
                f"sensors were read at {achieved_hz:.1f} Hz, under half the requested {hz:g} Hz",
                "lower --sensor-hz, or check for a slow sensor (NVML, remote files)",
            )
        )
    return warns


def _stuck_counter_warnings(
    series: SensorSeries, energy_channels: Sequence[Any]
) -> list[BenchWarning]:
    """One ``energy_counter_stuck`` warning per energy counter whose readings never changed
    over a run that lasted at least two readings: its 0 J is not a measurement (a counter
    the VM or firmware does not update, e.g. RAPL exposed but frozen by a hypervisor)."""
    warns = []
    for ch in energy_channels:
        if ch.kind != "energy":
            continue
        column = [v for v in series.values[series.index(ch.name)] if v is not None]
        if len(column) >= 2 and column[0] == column[-1] and len(set(column)) == 1:
            warns.append(
                BenchWarning(
                    "energy_counter_stuck",
                    f"the energy counter {ch.name} did not advance during the run "
                    f"({len(column)} readings of {column[0]:g} J): its energy figures of "
                    "0 J are not measurements",
                    "check that the counter works on this machine (a VM may expose RAPL "
                    "without updating it), or drop it with --sensors",
                    "energy_j",
                )
            )
    return warns


Channel = tuple[list[int], list[float | None]]


def power_series(series: SensorSeries, channels: Sequence[Any]) -> Channel | None:
    """The device's power over time, W, from the selected energy channels.

    Energy counters are unwrapped and differenced between consecutive readings (the
    value is placed at the interval's midpoint); power channels are taken as read; the
    channels are summed row by row (they are read in the same rows). Returns
    ``(t_ns, watts)`` or None when there is no channel or fewer than 2 readings.
    """
    if not channels or len(series.t_ns) < 2:
        return None
    index = {c.name: i for i, c in enumerate(series.channels)}
    t = series.t_ns
    mids = [(a + b) // 2 for a, b in itertools.pairwise(t)]
    total: list[float | None] = [0.0] * len(mids)
    for ch in channels:
        values = series.values[index[ch.name]]
        if ch.kind == "energy":
            cum = unwrap_counter(values, ch.wrap_j)
            col = [
                (b - a) / ((tb - ta) / 1e9) if a is not None and b is not None and tb > ta else None
                for a, b, ta, tb in zip(cum, cum[1:], t, t[1:], strict=False)
            ]
        else:
            col = [
                (a + b) / 2 if a is not None and b is not None else None
                for a, b in itertools.pairwise(values)
            ]
        total = [
            x + y if x is not None and y is not None else None
            for x, y in zip(total, col, strict=False)
        ]
    return mids, total


def sustain_channels(
    series: SensorSeries | None,
) -> tuple[list[Channel] | None, list[Channel] | None, Channel | None]:
    """``(temperature channels, CPU frequency channels, device power)`` of a sensor
    series, shaped for :func:`meltbench.measure.sustain.summarize_sustain`; each None
    when the series has no such channel."""
    if series is None or not series.channels:
        return None, None, None
    temp = [
        (list(series.t_ns), list(series.values[i]))
        for i, c in enumerate(series.channels)
        if c.kind == "temperature"
    ]
    freq = [
        (list(series.t_ns), list(series.values[i]))
        for i, c in enumerate(series.channels)
        if c.kind == "frequency" and c.name.startswith("cpufreq:")
    ]
    energy_channels, _ = select_energy_channels(list(series.channels))
    return temp or None, freq or None, power_series(series, energy_channels)
