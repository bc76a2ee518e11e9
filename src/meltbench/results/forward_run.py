"""The :class:`~meltbench.results.schema.RunResult` of a forward run (``--task encode``,
``--task classify``): latency and throughput per pass, the cold pass, memory, energy per
item where a sensor measures it, and the output check against PyTorch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meltbench.results.assemble import memory_section, model_facts, new_result
from meltbench.results.schema import Repetition, RunResult
from meltbench.timestamps import utc_now

if TYPE_CHECKING:
    from meltbench.api import PreparedRun

__all__ = ["forward_result"]


def _event(events: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((e for e in events if e.get("event") == name), None)


def forward_result(prepared: PreparedRun, measurement: Any) -> tuple[RunResult, bool]:
    """Turn a forward run's :class:`~meltbench.harness.measurement.Measurement` into its
    result.

    Returns:
        ``(result, interrupted)``. The result is ``failed`` with its cause when the worker
        failed (the passes it completed are kept and summarized); an output check that
        does not match adds the warning ``outputs_differ`` (the timing stands, but it is
        no fair comparison).
    """
    from meltbench.forward.analysis import forward_energy, pass_metrics
    from meltbench.measure.energy import idle_power_w
    from meltbench.measure.energy_channels import select_energy_channels
    from meltbench.measure.sensor_analysis import analyze_sensors
    from meltbench.measure.stats import summarize
    from meltbench.measure.warnings import BenchWarning, check_memory_rate, check_repetitions
    from meltbench.sensors.sampler import SensorSeries

    spec = prepared.spec
    w = spec.workload
    out = measurement.output()
    failure = out.failure_cause(spec.timeout_s)
    memory = memory_section(spec.sensors.memory_hz, measurement, out)
    samples, cold = pass_metrics(out.reps, w.batch_size)
    metrics = {name: summarize(values) for name, values in samples.items() if values}
    warnings: list[BenchWarning] = []
    if samples["latency_ms"]:
        warnings += check_repetitions(metrics, samples["latency_ms"], "latency_ms")
    if out.load_ns is not None:
        metrics["load_ms"] = summarize([out.load_ns / 1e6])
    if memory["peak_rss_bytes"]:
        metrics["peak_rss_bytes"] = summarize([float(memory["peak_rss_bytes"])])
    warnings += check_memory_rate(spec.sensors.memory_hz, memory["achieved_hz"])

    loaded = _event(out.events, "loaded")
    load_window = None
    if loaded and loaded.get("t_load_start_ns") is not None:
        load_window = (int(loaded["t_load_start_ns"]), int(loaded["t_load_end_ns"]))
    sensed = measurement.sensors or {}
    series = SensorSeries.from_dict(sensed["series"]) if sensed.get("series") else None
    baseline = SensorSeries.from_dict(measurement.baseline) if measurement.baseline else None
    sensors = analyze_sensors(measurement.probes, series, baseline, [], 0, hz=spec.sensors.hz,
                              load_window=load_window, idle_s=spec.sensors.idle_s,
                              device_state=measurement.device_state,
                              achieved_hz=sensed.get("achieved_hz"))  # fmt: skip
    for name, value in sensors.single.items():
        metrics[name] = summarize([value])
    warnings += sensors.warnings
    if series is not None and series.channels:
        channels, _ = select_energy_channels(list(series.channels))
        if channels:
            idle_w = idle_power_w(baseline, channels) if baseline is not None else None
            energy, energy_warnings = forward_energy(series, out.reps, w.batch_size, idle_w,
                                                     channels)  # fmt: skip
            for name, value in energy.items():
                metrics[name] = summarize([value])
            warnings += energy_warnings
    if sensed:
        sensors.info.update(policy=sensed.get("policy"), errors=sensed.get("errors", 0),
                            max_bracket_ms=sensed.get("max_bracket_ms"),
                            rereads=sensed.get("rereads", 0))  # fmt: skip

    prepared_event = (_event(out.events, "prepared") or {}).get("data") or {}
    checked = (_event(out.events, "forward") or {}).get("data") or {}
    check = checked.get("output_check")
    if check is not None and not check.get("match"):
        warnings.append(
            BenchWarning(
                "outputs_differ",
                f"{prepared.engine}'s outputs differ from PyTorch eager's: {check.get('reason')}",
                "the engine computes something else: compare its speed with care, check "
                "the export or the engine's options",
                "latency_ms",
            )
        )
    if failure is None and not samples["latency_ms"]:
        failure = "no forward pass was measured"
    facts = model_facts(prepared)
    if facts.get("n_params") is None:
        facts["n_params"] = prepared_event.get("n_params")
    forward = {
        "task": w.task,
        "items_per_pass": w.batch_size,
        "inputs": checked.get("inputs"),
        "output_check": check,
        "reference": "torch eager, float32, same weights and inputs",
        "prepare": {
            "prepare_ms": (prepared_event.get("prepare_ns") or 0) / 1e6 or None,
            "built": prepared_event.get("built"),
            "build_s": prepared_event.get("build_s"),
            "exports": prepared_event.get("exports"),
            "versions": prepared_event.get("versions"),
        },
    }
    settings = {k: v for k, v in prepared.settings.to_dict().items()
                if k in ("threads", "seed", "dtype", "device", "options")}  # fmt: skip
    result = new_result(
        prepared,
        failure=failure,
        started_at=measurement.started_at,
        finished_at=measurement.finished_at or utc_now(),
        settings=settings,
        model=facts,
        engine=out.engine or {"name": prepared.engine},
        environment=out.environment or {},
        metrics=metrics,
        cold=cold,
        memory=memory,
        warnings=[x.to_dict() for x in warnings],
        repetitions=[
            Repetition.model_validate({k: v for k, v in r.items() if k != "event"})
            for r in out.reps
        ],
        sensors=sensors.info,
        device_state=measurement.device_state,
        forward=forward,
    )
    return result, measurement.interrupted
