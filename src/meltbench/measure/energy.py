"""Energy of measurement windows from sampled sensor readings (pure: no clock, no file).

Input is a :class:`~meltbench.sensors.sampler.SensorSeries` — sensor readings stamped
with ``time.perf_counter_ns``, the clock of the worker's token timestamps — and windows
on that clock (load, prefill, decode, a whole request, an idle baseline). Output is
joules, watts and joules per token, with None wherever a number was not measured (the
ml-energy/zeus convention; never a made-up 0).

Method: sample and interpolate
------------------------------
The sampler reads each channel at a fixed rate; between two readings a channel is taken
to change linearly. A window edge almost never falls on a reading, so the value at the
edge is interpolated between the readings on either side of it.

- **Energy counters (preferred).** A cumulative counter (RAPL ``energy_uj``, NVML
  ``nvmlDeviceGetTotalEnergyConsumption``) is integrated by the hardware, so the energy
  of a window is just ``counter(end) - counter(start)``; only the edges are
  interpolated, and nothing between the readings is lost. This is why Zeus measures
  GPUs with the NVML energy counter where the GPU has one (Volta and newer) and why
  RAPL exposes energy *status* counters rather than power readings [1, 2, 3]. Power
  readings, in contrast, are samples of a curve: a spike between two readings is
  missed, and some are averages over a window of their own
  (``nvmlDeviceGetPowerUsage`` returns a 1 s average on Ampere and newer, except
  GA100 [3]).
- **Power channels.** Without a counter, the energy is the integral of the
  piecewise-linear power curve through the readings (trapezoid rule), with the
  interpolated values at the window edges.
- **Counters that update slowly.** Some counters advance in steps less often than they
  are read (NVML's energy counter every 20-100 ms on recent GPUs [4]; Zeus 0.6.1 added
  ``approx_instant_energy`` because a window shorter than the update period measured
  0 J [5]). Interpolating the raw readings
  would put all of a step's energy at the reading that first shows it. Instead a counter
  is interpolated between its *update points* — the first reading of each new value
  (:func:`counter_update_points`) — which spreads each step's energy evenly over the
  time since the previous step. For a counter that changes at every reading (RAPL
  updates about every millisecond) the update points are all the readings.

Resolution limit
----------------
Between two readings the method assumes the power is what the bracketing readings say
(constant for a counter step, linear for power). A window shorter than the sampling
period therefore has no reading inside it: its energy is an interpolation, i.e. the
window's duration times the average power of the period around it. At 10 Hz a 50 ms
prefill lies inside one 100 ms period, and its energy is that period's average power
x 50 ms — the power difference between prefill and decode in that period is smeared
over both. Sample at 100 Hz (or more, for counters that update that fast) for windows
shorter than a few periods; long windows (decode, whole requests, sustained runs) are
accurate at 10 Hz because only their edges are interpolated.

Idle subtraction
----------------
``_net`` values subtract the idle baseline: ``energy_net = energy - idle_w x duration``,
with ``idle_w`` the average power of a baseline sampled with nothing running. They
estimate the energy caused by the work rather than by the device being on. When the
work adds little over idle, noise can make a net value negative; it is kept as measured
(not clamped to 0), so averages over repetitions stay unbiased. ``tokens_per_j_net`` is
None when the net energy is not positive.

Counter wrap-around
-------------------
The Linux powercap framework documents ``energy_uj`` ("current energy counter in
micro joules") and ``max_energy_range_uj`` ("range of the above energy counter in
micro-joules"): the counter wraps to 0 after that range [6]. :func:`unwrap_counter` turns
readings back into a monotonic series (see there for drops that are not a wrap).

Channel selection
-----------------
:func:`select_energy_channels` picks the channels whose sum is the device's energy
without counting anything twice: one board-total channel if there is one (Jetson
``VDD_IN``, a battery, RAPL ``psys``), else the sum of the channels that are not inside
another (RAPL ``package`` + ``dram`` + a GPU, not ``core``/``uncore`` which are inside
``package``), preferring an energy counter over a power reading of the same device
(NVML gives both for a GPU).

Sources
-------
[1] Zeus, "Measuring energy": https://ml.energy/zeus/measure/ (``ZeusMonitor``
    begin/end windows; NVML energy counter on Volta and newer).
[2] Intel 64 and IA-32 Architectures Software Developer's Manual, vol. 3B, "Platform
    Specific Power Management Support": RAPL ``MSR_*_ENERGY_STATUS`` counters.
[3] NVIDIA NVML API reference, device queries: ``nvmlDeviceGetTotalEnergyConsumption``
    (mJ since the driver was last reloaded) and ``nvmlDeviceGetPowerUsage``:
    https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html
[4] PETSc, ``PetscLogGpuEnergyMeter``:
    https://petsc.org/main/manualpages/Log/PetscLogGpuEnergyMeter
[5] Zeus v0.6.1 release notes: https://github.com/ml-energy/zeus/releases/tag/v0.6.1
[6] Linux powercap sysfs documentation:
    https://docs.kernel.org/power/powercap/powercap.html
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meltbench.measure.energy_channels import select_energy_channels
from meltbench.sensors.base import Channel
from meltbench.sensors.sampler import SensorSeries

__all__ = [
    "Window",
    "attribute_energy",
    "counter_energy_j",
    "counter_update_points",
    "idle_power_w",
    "interpolate",
    "power_energy_j",
    "rep_energy_metrics",
    "unwrap_counter",
    "window_energy",
]

_NS_PER_S = 1_000_000_000

#: keys of :func:`rep_energy_metrics` (each also with the ``_net`` suffix)
_REP_KEYS = (
    "energy_j_prefill",
    "energy_j_decode",
    "energy_j",
    "avg_power_w_prefill",
    "avg_power_w_decode",
    "avg_power_w",
    "j_per_token_prefill",
    "j_per_token_decode",
    "j_per_token",
    "tokens_per_j_decode",
)


@dataclass(frozen=True)
class Window:
    """A measurement window on the worker's clock.

    Attributes:
        name: ``"load"``, ``"prefill"``, ``"decode"``, ``"request"``, ``"idle"``...
        start_ns, end_ns: bounds, ns of ``time.perf_counter_ns``; ``end_ns >= start_ns``.
        tokens: tokens the window produced or processed (for J/token), None if n/a.

    Raises:
        ValueError: if ``end_ns < start_ns`` or ``tokens < 0``.
    """

    name: str
    start_ns: int
    end_ns: int
    tokens: int | None = None

    def __post_init__(self) -> None:
        if self.end_ns < self.start_ns:
            raise ValueError(
                f"window {self.name!r} ends before it starts ({self.start_ns} > {self.end_ns})"
            )
        if self.tokens is not None and self.tokens < 0:
            raise ValueError(f"window {self.name!r} has a negative token count")

    @property
    def duration_ns(self) -> int:
        """``end_ns - start_ns``."""
        return self.end_ns - self.start_ns

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.duration_ns / _NS_PER_S


# -- counters ---------------------------------------------------------------------------


def unwrap_counter(values: Sequence[float | None], wrap_j: float | None) -> list[float | None]:
    """Make cumulative counter readings monotonic, in J.

    Rules, between consecutive valid (non-None) readings ``prev`` then ``v``:

    - ``v >= prev``: normal counting.
    - ``v < prev`` and ``prev - v > wrap_j / 2``: one wrap-around; ``wrap_j`` is added to
      this and every later reading (the powercap counter restarts at 0 after
      ``max_energy_range_uj``; see the module docstring). Several wraps in one series are
      handled; several wraps *between two readings* cannot be seen — at RAPL's ranges
      (tens to hundreds of kJ) that needs minutes between readings.
    - any other drop (no ``wrap_j``, or a drop too small to be a wrap): the counter was
      reset (NVML's counter restarts when the driver reloads) or misread. The energy
      across the drop is unknown, so this reading and every later one become None —
      "not measured" rather than a guess. (Window functions unwrap only the readings
      around their window, so a reset invalidates only the windows that span it.)

    None readings stay None and do not break the chain: the next valid reading is
    compared with the last valid one.

    Args:
        values: readings in J, in time order; None where a read failed.
        wrap_j: counter range in J (``max_energy_range_uj / 1e6``), None if it never wraps.

    Returns:
        one value per input, in J, continuing from the first valid reading.
    """
    out: list[float | None] = []
    offset = 0.0
    prev: float | None = None
    invalid = False
    for v in values:
        if v is None or invalid:
            out.append(None)
            continue
        if prev is not None and v < prev:
            if wrap_j is not None and wrap_j > 0 and prev - v > wrap_j / 2:
                offset += wrap_j
            else:
                invalid = True
                out.append(None)
                continue
        prev = v
        out.append(v + offset)
    return out


def counter_update_points(
    t_ns: Sequence[int], cumulative_j: Sequence[float | None]
) -> tuple[list[int], list[float]]:
    """The readings at which a cumulative counter took a new value, plus the last reading.

    A counter that the hardware updates less often than it is read repeats its value;
    the first reading of each new value is the best estimate of when the update
    happened. Interpolating between these points (module docstring) spreads each step
    over the time since the previous one. The first valid reading is always kept, and so
    is the last one (the counter is known to have that value until then). None readings
    are skipped.

    Returns:
        ``(t_ns, values)`` of the kept readings, in order.
    """
    if len(t_ns) != len(cumulative_j):
        raise ValueError(f"{len(t_ns)} timestamps for {len(cumulative_j)} values")
    ts: list[int] = []
    vs: list[float] = []
    last_t: int | None = None
    last_v: float | None = None
    for t, v in zip(t_ns, cumulative_j, strict=True):
        if v is None:
            continue
        if last_v is None or v != last_v:
            ts.append(t)
            vs.append(float(v))
        last_t, last_v = t, v
    if last_t is not None and ts[-1] != last_t:
        ts.append(last_t)
        vs.append(float(last_v))  # type: ignore[arg-type]
    return ts, vs


# -- interpolation and integration ------------------------------------------------------


def _valid_before(values: Sequence[float | None], i: int) -> int:
    """Largest index <= i with a valid value, or -1."""
    while i >= 0 and values[i] is None:
        i -= 1
    return i


def _valid_after(values: Sequence[float | None], j: int) -> int:
    """Smallest index >= j with a valid value, or len(values)."""
    n = len(values)
    while j < n and values[j] is None:
        j += 1
    return j


def interpolate(t_ns: Sequence[int], values: Sequence[float | None], at_ns: int) -> float | None:
    """The value at ``at_ns`` by linear interpolation between the readings around it.

    The readings used are the nearest *valid* ones at or before and at or after
    ``at_ns`` (None readings — failed reads — are skipped, so one failed read does not
    lose a window). A reading exactly at ``at_ns`` is returned as is.

    Args:
        t_ns: reading times, ns, non-decreasing (as the sampler records them).
        values: one reading per time; None where not measured.
        at_ns: the time wanted, ns.

    Returns:
        the value, or None when ``at_ns`` is outside the span of the valid readings.

    Raises:
        ValueError: if the sequences differ in length.
    """
    if len(t_ns) != len(values):
        raise ValueError(f"{len(t_ns)} timestamps for {len(values)} values")
    i = _valid_before(values, bisect.bisect_right(t_ns, at_ns) - 1)
    if i < 0:
        return None
    v0 = values[i]
    assert v0 is not None
    if t_ns[i] == at_ns:
        return float(v0)
    j = _valid_after(values, bisect.bisect_left(t_ns, at_ns))
    if j >= len(values):
        return None
    v1 = values[j]
    assert v1 is not None
    t0, t1 = t_ns[i], t_ns[j]
    return v0 + (v1 - v0) * (at_ns - t0) / (t1 - t0)


def _check_window(start_ns: int, end_ns: int) -> None:
    if end_ns < start_ns:
        raise ValueError(f"window ends before it starts ({start_ns} > {end_ns})")


def counter_energy_j(
    t_ns: Sequence[int], cumulative_j: Sequence[float | None], start_ns: int, end_ns: int
) -> float | None:
    """Energy over ``[start_ns, end_ns]`` from a cumulative counter, J.

    ``interpolate(end) - interpolate(start)`` on the readings as given: pass them
    through :func:`unwrap_counter` first (and :func:`counter_update_points` for a
    counter that updates in steps).

    Returns:
        J, or None when the readings do not cover both edges.

    Raises:
        ValueError: if ``end_ns < start_ns`` or the sequences differ in length.
    """
    _check_window(start_ns, end_ns)
    e0 = interpolate(t_ns, cumulative_j, start_ns)
    e1 = interpolate(t_ns, cumulative_j, end_ns)
    if e0 is None or e1 is None:
        return None
    return e1 - e0


def _integral(
    t_ns: Sequence[int], values: Sequence[float | None], start_ns: int, end_ns: int
) -> float | None:
    """Integral of the piecewise-linear curve over the window, in value x ns."""
    _check_window(start_ns, end_ns)
    v_start = interpolate(t_ns, values, start_ns)
    v_end = interpolate(t_ns, values, end_ns)
    if v_start is None or v_end is None:
        return None
    points: list[tuple[int, float]] = [(start_ns, v_start)]
    lo = bisect.bisect_right(t_ns, start_ns)
    hi = bisect.bisect_left(t_ns, end_ns)
    for k in range(lo, hi):
        v = values[k]
        if v is not None:
            points.append((t_ns[k], float(v)))
    points.append((end_ns, v_end))
    return math.fsum((tb - ta) * (va + vb) for (ta, va), (tb, vb) in itertools.pairwise(points)) / 2


def power_energy_j(
    t_ns: Sequence[int], power_w: Sequence[float | None], start_ns: int, end_ns: int
) -> float | None:
    """Energy over ``[start_ns, end_ns]`` from power readings, J.

    The integral of the piecewise-linear power curve through the valid readings
    (trapezoid rule), from the interpolated power at ``start_ns`` to the interpolated
    power at ``end_ns``. E.g. 2 W rising linearly to 4 W over 1 s gives 3 J.

    Returns:
        J, or None when the readings do not cover both edges.

    Raises:
        ValueError: if ``end_ns < start_ns`` or the sequences differ in length.
    """
    area = _integral(t_ns, power_w, start_ns, end_ns)
    return None if area is None else area / _NS_PER_S


# -- windows ----------------------------------------------------------------------------


def _counter_window_j(
    t_ns: Sequence[int],
    raw: Sequence[float | None],
    wrap_j: float | None,
    start_ns: int,
    end_ns: int,
) -> float | None:
    """Counter energy over the window, using only the readings around it."""
    n = len(raw)
    i = _valid_before(raw, bisect.bisect_right(t_ns, start_ns) - 1)
    j = _valid_after(raw, bisect.bisect_left(t_ns, end_ns))
    if i < 0 or j >= n:
        return None
    # widen to the update points around the window (counter_update_points): back to
    # the first reading of the run of equal readings that holds i; forward, if j is
    # inside a run of equal readings, to the first reading that differs (or the last)
    lo = i
    while True:
        k = _valid_before(raw, lo - 1)
        if k < 0 or raw[k] != raw[i]:
            break
        lo = k
    hi = j
    k = _valid_before(raw, j - 1)
    if k >= 0 and raw[k] == raw[j]:
        k = j
        while True:
            k = _valid_after(raw, k + 1)
            if k >= n:
                break
            hi = k
            if raw[k] != raw[j]:
                break
    ts = t_ns[lo : hi + 1]
    unwrapped = unwrap_counter(raw[lo : hi + 1], wrap_j)
    pt, pv = counter_update_points(ts, unwrapped)
    return counter_energy_j(pt, pv, start_ns, end_ns)


def _channel_energy_j(series: SensorSeries, channel: Channel, window: Window) -> float | None:
    values = series.channel(channel.name)
    if channel.kind == "energy":
        return _counter_window_j(
            series.t_ns, values, channel.wrap_j, window.start_ns, window.end_ns
        )
    if channel.kind == "power":
        return power_energy_j(series.t_ns, values, window.start_ns, window.end_ns)
    raise ValueError(f"channel {channel.name!r} is {channel.kind}, not energy or power")


def _resolve(series: SensorSeries, channels: Sequence[Channel] | None) -> list[Channel]:
    if channels is None:
        return select_energy_channels(series.channels)[0]
    return list(channels)


def window_energy(
    series: SensorSeries, window: Window, channels: Sequence[Channel] | None = None
) -> tuple[float | None, str]:
    """Energy of one window, J, summed over ``channels``.

    Energy channels use the counter method (unwrapped, between update points), power
    channels the power integral (module docstring).

    Args:
        series: the readings.
        window: the window (its ``tokens`` are not used here).
        channels: the channels to add up, normally from :func:`select_energy_channels`;
            None selects them from ``series.channels``.

    Returns:
        ``(energy_j, method)``: method is ``"counter"``, ``"power-integral"``, ``"mixed"``,
        or ``"none"`` with no channel. ``energy_j`` is None when any channel's readings
        do not cover the window (outside the sampled span, or a counter reset inside
        it) or there is no channel — never 0 for "not measured".

    Raises:
        KeyError: a channel is not in the series. ValueError: a channel is neither energy
        nor power.
    """
    chosen = _resolve(series, channels)
    if not chosen:
        return None, "none"
    kinds = {c.kind for c in chosen}
    method = (
        "counter" if kinds == {"energy"} else "power-integral" if kinds == {"power"} else "mixed"
    )
    total = 0.0
    for c in chosen:
        e = _channel_energy_j(series, c, window)
        if e is None:
            return None, method
        total += e
    return total, method


def _valid_span(series: SensorSeries, channel: Channel) -> tuple[int, int] | None:
    values = series.channel(channel.name)
    i = _valid_after(values, 0)
    j = _valid_before(values, len(values) - 1)
    if i >= len(values):
        return None
    return series.t_ns[i], series.t_ns[j]


def idle_power_w(series: SensorSeries, channels: Sequence[Channel] | None = None) -> float | None:
    """Average power of an idle baseline, W: its energy over the span every channel
    covers, divided by that span.

    Use the same channels as for the run (:func:`select_energy_channels` on the same
    sensors), so that the subtraction compares like with like.

    Returns:
        W, or None when there is no channel or the covered span is empty.
    """
    chosen = _resolve(series, channels)
    if not chosen:
        return None
    spans = [_valid_span(series, c) for c in chosen]
    if any(s is None for s in spans):
        return None
    start = max(s[0] for s in spans if s is not None)
    end = min(s[1] for s in spans if s is not None)
    if end <= start:
        return None
    energy, _ = window_energy(series, Window("idle", start, end), chosen)
    return None if energy is None else energy * _NS_PER_S / (end - start)


def _ratios(energy: float | None, duration_s: float, tokens: int | None) -> dict[str, Any]:
    """avg_power_w, j_per_token, tokens_per_j for one energy value (None where undefined)."""
    if energy is None or duration_s <= 0:
        return {"avg_power_w": None, "j_per_token": None, "tokens_per_j": None}
    return {
        "avg_power_w": energy / duration_s,
        "j_per_token": energy / tokens if tokens else None,
        "tokens_per_j": tokens / energy if tokens and energy > 0 else None,
    }


def attribute_energy(
    series: SensorSeries,
    windows: Sequence[Window],
    idle_w: float | None,
    channels: Sequence[Channel] | None = None,
) -> dict[str, dict[str, Any]]:
    """Energy, power and energy per token of each window, gross and net of idle.

    Args:
        series: the readings.
        windows: windows with unique names.
        idle_w: idle power, W (:func:`idle_power_w`); None gives None for every ``_net``.
        channels: the channels to add up; None selects them from the series.

    Returns:
        ``{window.name: {...}}`` with ``energy_j``, ``avg_power_w`` (energy / duration),
        ``j_per_token`` (energy / tokens), ``tokens_per_j`` (tokens / energy, when the
        energy is positive), the same four with ``_net`` (``energy_j_net = energy_j -
        idle_w x duration_s``; may be negative, kept as is), plus ``duration_s``,
        ``tokens`` and ``method``. Ratios are None when the window has no duration or no
        tokens; everything is None when the energy was not measured.

    Raises:
        ValueError: two windows share a name.
    """
    chosen = _resolve(series, channels)
    names = [w.name for w in windows]
    if len(set(names)) != len(names):
        raise ValueError(f"window names must be unique: {names}")
    out: dict[str, dict[str, Any]] = {}
    for w in windows:
        energy, method = window_energy(series, w, chosen)
        duration_s = w.duration_s
        net = energy - idle_w * duration_s if energy is not None and idle_w is not None else None
        row: dict[str, Any] = {"energy_j": energy, **_ratios(energy, duration_s, w.tokens)}
        row["energy_j_net"] = net
        row.update({f"{k}_net": v for k, v in _ratios(net, duration_s, w.tokens).items()})
        row.update(duration_s=duration_s, tokens=w.tokens, method=method)
        out[w.name] = row
    return out


def rep_energy_metrics(
    series: SensorSeries,
    t_start_ns: int,
    token_ns: Sequence[int],
    n_prompt: int,
    idle_w: float | None,
    channels: Sequence[Channel] | None = None,
) -> dict[str, float | None]:
    """Energy metrics of one repetition (one request), by the names of :mod:`meltbench.metrics`.

    Windows: ``prefill`` = ``[t_start_ns, token_ns[0]]`` with ``n_prompt`` tokens;
    ``decode`` = ``[token_ns[0], token_ns[-1]]`` with ``n_gen - 1`` tokens (only when
    ``n_gen >= 2``; the decode rate's definition); the request = ``[t_start_ns,
    token_ns[-1]]`` with ``n_gen`` generated tokens (unsuffixed names).

    Returns:
        exactly these keys, each also with ``_net``: ``energy_j_prefill``,
        ``energy_j_decode``, ``energy_j``, ``avg_power_w_prefill``,
        ``avg_power_w_decode``, ``avg_power_w``, ``j_per_token_prefill``,
        ``j_per_token_decode``, ``j_per_token``, ``tokens_per_j_decode``; None where not
        measured (no covering readings, no idle baseline for ``_net``, one token for
        decode).

    Raises:
        ValueError: no tokens, or a token before the start.
    """
    if not token_ns:
        raise ValueError("a repetition needs at least one token timestamp")
    n_gen = len(token_ns)
    windows = [
        Window("prefill", t_start_ns, token_ns[0], n_prompt),
        Window("request", t_start_ns, token_ns[-1], n_gen),
    ]
    if n_gen >= 2:
        windows.append(Window("decode", token_ns[0], token_ns[-1], n_gen - 1))
    attributed = attribute_energy(series, windows, idle_w, channels)
    out: dict[str, float | None] = {}
    for key in _REP_KEYS:
        for suffix in ("", "_net"):
            base = key
            window = "request"
            for w in ("_prefill", "_decode"):
                if key.endswith(w):
                    base, window = key[: -len(w)], w[1:]
            values = attributed.get(window)
            out[key + suffix] = values[base + suffix] if values is not None else None
    return out
