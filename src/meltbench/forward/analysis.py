"""Metrics of a forward run, from its passes (pure: no engine, no torch).

Per timed pass *i* of ``B`` items (sequences or images), from the worker's
``perf_counter_ns`` stamps:

- ``latency_ms[i] = (t_end_ns - t_start_ns) / 1e6``;
- ``throughput_items_per_s[i] = B / (latency_ms[i] / 1e3)``.

Energy: a pass (milliseconds) is shorter than a sensor's sampling period (100 ms at
10 Hz), so energy is attributed to one window that spans every timed pass, from the
first one's start to the last one's end (``forward``), with ``B x passes`` items:
``energy_j_forward``, ``avg_power_w_forward``, ``j_per_item = energy_j_forward /
items`` and the same net of idle power (:func:`meltbench.measure.energy.attribute_energy`).
The passes run back to back unless a cool-down is set; with one, the window includes the
waits, and a warning says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meltbench.measure.energy import Window, attribute_energy
from meltbench.measure.warnings import BenchWarning

__all__ = ["forward_energy", "pass_metrics"]


def _timed(reps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in reps if r.get("kind") == "timed" and r.get("t_end_ns") is not None]


def pass_metrics(
    reps: Sequence[dict[str, Any]], items_per_pass: int
) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """Per-pass samples of the timed passes, and the cold (first) pass.

    Args:
        reps: the worker's ``rep`` events (``kind``, ``t_start_ns``, ``t_end_ns``),
            warmup first.
        items_per_pass: the batch size ``B`` (>= 1).

    Returns:
        ``({"latency_ms": [...], "throughput_items_per_s": [...]}, cold)``; ``cold`` holds
        both metrics of pass 0 (warmup or timed), or is empty without passes.

    Raises:
        ValueError: ``items_per_pass < 1``, or a pass that ends before it starts.
    """
    if items_per_pass < 1:
        raise ValueError(f"items_per_pass must be >= 1 (got {items_per_pass})")

    def both(rep: dict[str, Any]) -> tuple[float, float]:
        ns = int(rep["t_end_ns"]) - int(rep["t_start_ns"])
        if ns < 0:
            raise ValueError(f"pass {rep.get('index')} ends before it starts")
        ms = ns / 1e6
        return ms, (items_per_pass / (ms / 1e3) if ms > 0 else float("inf"))

    samples: dict[str, list[float]] = {"latency_ms": [], "throughput_items_per_s": []}
    for rep in _timed(reps):
        ms, rate = both(rep)
        samples["latency_ms"].append(ms)
        samples["throughput_items_per_s"].append(rate)
    cold: dict[str, float | None] = {}
    first = next((r for r in reps if r.get("t_end_ns") is not None), None)
    if first is not None:
        cold["latency_ms"], cold["throughput_items_per_s"] = both(first)
    return samples, cold


def forward_energy(
    series: Any,
    reps: Sequence[dict[str, Any]],
    items_per_pass: int,
    idle_w: float | None,
    channels: Sequence[Any] | None,
) -> tuple[dict[str, float], list[BenchWarning]]:
    """Energy of the timed passes, as one window.

    Args:
        series: the sensors' :class:`~meltbench.sensors.sampler.SensorSeries`.
        reps: the ``rep`` events.
        items_per_pass: the batch size.
        idle_w: idle power, W (None: no ``_net`` values).
        channels: the energy channels to add up (None: chosen from the series).

    Returns:
        ``({metric: value}, warnings)`` with ``energy_j_forward``,
        ``avg_power_w_forward``, ``j_per_item`` and their ``_net`` forms where measured;
        empty without timed passes or readings that cover them.
    """
    timed = _timed(reps)
    if not timed:
        return {}, []
    items = items_per_pass * len(timed)
    window = Window("forward", int(timed[0]["t_start_ns"]), int(timed[-1]["t_end_ns"]), items)
    row = attribute_energy(series, [window], idle_w, channels)["forward"]
    names = {"energy_j": "energy_j_forward", "avg_power_w": "avg_power_w_forward",
             "j_per_token": "j_per_item"}  # fmt: skip
    out: dict[str, float] = {}
    for key, name in names.items():
        for suffix in ("", "_net"):
            value = row.get(key + suffix)
            if value is not None:
                out[name + suffix] = float(value)
    warnings: list[BenchWarning] = []
    if out and any(r.get("cooldown") for r in timed):
        warnings.append(
            BenchWarning(
                "energy_includes_cooldown",
                "the forward energy window spans the cool-down waits between passes",
                "drop --cooldown for energy per item, or read avg_power_w_forward with care",
                "j_per_item",
            )
        )
    return out, warnings
