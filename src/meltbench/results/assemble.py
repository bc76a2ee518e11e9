"""Assembling a :class:`~meltbench.results.schema.RunResult`: the one place a benchmark's
result is created, for local, SSH and Android runs.

- :func:`new_result`: the record itself (id, status from the failure, spec, target), from
  whatever a run measured;
- :func:`model_facts`: what is known about the model before it ran;
- :func:`result_from_measurement`: a worker's measurement (local, or an SSH device's
  agent) turned into metrics, warnings, sensors, memory, the roofline and the sustain
  series, through the pure analysis of :mod:`meltbench.measure`.

Android runs (llama-bench over adb) assemble their own metrics and call
:func:`new_result` and :func:`model_facts` too.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from meltbench.errors import UsageError
from meltbench.measure.analysis import analyze_reps
from meltbench.measure.warnings import BenchWarning, check_memory_rate
from meltbench.results.schema import Repetition, RunResult
from meltbench.timestamps import utc_now

if TYPE_CHECKING:
    from meltbench.api import PreparedRun

__all__ = [
    "memory_section",
    "model_facts",
    "new_result",
    "request_result",
    "result_from_measurement",
]


def model_facts(prepared: PreparedRun) -> dict[str, Any]:
    """The model's facts before it ran: reference, alias, format, weights and what its
    header says (name, architecture, quant, n_params, size_bytes, ...)."""
    facts: dict[str, Any] = {
        "ref": prepared.model.ref,
        "alias": prepared.model.alias,
        "format": prepared.model.format,
        "weights": prepared.spec.model.weights,
    }
    facts.update(prepared.model.info)
    return facts


def new_result(
    prepared: PreparedRun,
    *,
    failure: str | None,
    started_at: str,
    finished_at: str | None = None,
    test: str | None = None,
    **sections: Any,
) -> RunResult:
    """A new run record of ``prepared``: a fresh id, ``failed`` when ``failure`` is given
    (the cause, one line) else ``ok``, the spec and its target, the workload's label as
    ``test`` unless given, and the other sections as given (``metrics``, ``engine``, ...).

    Raises:
        pydantic.ValidationError: a section of the wrong shape (a bug, not bad input).
    """
    spec = prepared.spec
    return RunResult(
        run_id=uuid.uuid4().hex,
        status="failed" if failure else "ok",
        failure=failure,
        started_at=started_at,
        finished_at=finished_at or utc_now(),
        test=test or spec.workload.label,
        spec=spec,
        target=spec.target,
        **sections,
    )


def memory_section(memory_hz: float, measurement: Any, out: Any) -> dict[str, Any]:
    """A result's ``memory`` section: the peak RSS (the larger of the kernel's VmHWM and
    the sampled peak), both sources, the requested and achieved sampling rates and the
    samples.

    Args:
        memory_hz: the requested RSS sampling rate, Hz.
        measurement: the :class:`~meltbench.harness.measurement.Measurement`.
        out: its :meth:`~meltbench.harness.measurement.Measurement.output`.
    """
    mem = measurement.memory
    kernel = (out.done or {}).get("memory") or {}
    sampled_peak = mem.get("peak_sampled_bytes")
    candidates = [v for v in (kernel.get("vm_hwm_bytes"), sampled_peak) if v]
    return {
        "peak_rss_bytes": max(candidates) if candidates else None,
        "peak_rss_sampled_bytes": sampled_peak,
        "vm_hwm_bytes": kernel.get("vm_hwm_bytes"),
        "ru_maxrss_bytes": kernel.get("ru_maxrss_bytes"),
        "requested_hz": memory_hz,
        "achieved_hz": mem.get("achieved_hz"),
        "policy": mem.get("policy"),
        "samples": mem.get("samples") or [],
    }


def result_from_measurement(
    prepared: PreparedRun,
    measurement: Any,
    sustain_s: float | None,
    sustain_bin_s: float,
    bandwidth: Any = None,
) -> tuple[RunResult, bool]:
    """Turn a :class:`~meltbench.harness.measurement.Measurement` into a result (local and
    SSH runs alike: an SSH run's measurement comes back from the device's agent).

    Args:
        prepared: the :class:`meltbench.api.PreparedRun` that was measured.
        measurement: what the measurement recorded (worker events, memory, sensors).
        sustain_s, sustain_bin_s: for ``meltbench sustain``: its duration and time bins,
            s; ``sustain_s=None`` for an ordinary run.
        bandwidth: a :class:`~meltbench.measure.bandwidth.BandwidthResult`, the roof of
            the decode roofline; None leaves the bound and efficiency out.

    Returns:
        ``(result, interrupted)``: the result (``failed`` with its cause when the worker
        failed; nothing measured is dropped) and whether Ctrl-C ended it.
    """
    from meltbench.measure.sensor_analysis import analyze_sensors
    from meltbench.measure.stats import summarize
    from meltbench.sensors.sampler import SensorSeries

    spec = prepared.spec
    out = measurement.output()
    interrupted = measurement.interrupted
    started, finished = measurement.started_at, measurement.finished_at or utc_now()
    memory = memory_section(spec.sensors.memory_hz, measurement, out)
    peak = memory["peak_rss_bytes"]

    failure = out.failure_cause(spec.timeout_s)
    if prepared.requests is not None:
        result = request_result(
            prepared,
            out.requests,
            (out.replayed or {}).get("template"),
            failure=failure,
            started_at=started,
            finished_at=finished,
            engine=out.engine,
            environment=out.environment,
            memory=memory,
            load_ns=out.load_ns,
        )
        return result, interrupted
    try:
        analysis = analyze_reps(out.reps, spec.workload.n_prompt, out.load_ns, peak)
    except (ValueError, KeyError, TypeError) as exc:
        from meltbench.measure.analysis import Analysis

        analysis = Analysis()
        failure = failure or f"worker sent inconsistent repetitions: {exc}"
    warnings: list[BenchWarning] = list(analysis.warnings)
    warnings += check_memory_rate(spec.sensors.memory_hz, memory["achieved_hz"])

    loaded = next((e for e in out.events if e.get("event") == "loaded"), None)
    load_window = None
    if loaded and loaded.get("t_load_start_ns") is not None:
        load_window = (int(loaded["t_load_start_ns"]), int(loaded["t_load_end_ns"]))
    sensed = measurement.sensors or {}
    series = SensorSeries.from_dict(sensed["series"]) if sensed.get("series") else None
    baseline = SensorSeries.from_dict(measurement.baseline) if measurement.baseline else None
    sensors = analyze_sensors(
        measurement.probes,
        series,
        baseline,
        out.reps,
        spec.workload.n_prompt,
        hz=spec.sensors.hz,
        load_window=load_window,
        idle_s=spec.sensors.idle_s,
        device_state=measurement.device_state,
        achieved_hz=sensed.get("achieved_hz"),
    )
    metrics = dict(analysis.metrics)
    for name, values in sensors.per_rep.items():
        if values:
            metrics[name] = summarize(values)
    for name, value in sensors.single.items():
        metrics[name] = summarize([value])
    warnings += sensors.warnings
    roof = _roofline_of(prepared, out.engine, metrics, memory, bandwidth)
    if sensed:
        sensors.info["policy"] = sensed.get("policy")
        sensors.info["errors"] = sensed.get("errors", 0)
        sensors.info["max_bracket_ms"] = sensed.get("max_bracket_ms")
        sensors.info["rereads"] = sensed.get("rereads", 0)

    sustain = None
    if sustain_s is not None:
        sustain = _sustain_section(out.reps, series, sustain_s, sustain_bin_s)
        verdict = sustain.get("verdict") or {}
        if verdict.get("throttled"):
            warnings.append(
                BenchWarning(
                    "throttling",
                    f"decode tok/s fell {verdict.get('drop_ratio', 0):.0%} after "
                    f"{verdict.get('time_to_throttle_s') or 0:.0f} s with "
                    "temperature/frequency changes: the device throttled",
                    "report steady-state numbers, cool the device, or use a lower power mode",
                    "decode_tps",
                )
            )

    facts = model_facts(prepared)
    if facts.get("n_params") is None and out.engine:
        facts["n_params"] = out.engine.get("n_params")  # random weights: built ones
    test = spec.workload.label
    if sustain_s is not None:
        test = f"sustain{sustain_s:g}s:{test}"
    result = new_result(
        prepared,
        failure=failure,
        started_at=started,
        finished_at=finished,
        test=test,
        settings=prepared.settings.to_dict(),
        model=facts,
        engine=out.engine or {"name": prepared.engine},
        environment=out.environment or {},
        metrics=metrics,
        cold=analysis.cold,
        fidelity=analysis.fidelity,
        memory=memory,
        warnings=[w.to_dict() for w in warnings],
        profile=out.profile,
        repetitions=[
            Repetition.model_validate({k: v for k, v in r.items() if k != "event"})
            for r in out.reps
        ],
        sensors=sensors.info,
        device_state=measurement.device_state,
        sustain=sustain,
        roofline=roof,
    )
    return result, interrupted


def _roofline_of(
    prepared: PreparedRun,
    engine_info: dict[str, Any] | None,
    metrics: dict[str, Any],
    memory: dict[str, Any],
    bandwidth: Any,
) -> dict[str, Any] | None:
    """Add KV cache bytes (to ``memory`` and ``metrics``) and the decode roofline metrics;
    return the roofline section (None for a model that is not a GGUF file)."""
    from meltbench.measure.roofline import analyze_roofline, kv_figures
    from meltbench.measure.stats import summarize
    from meltbench.models.footprint import read_footprint

    footprint = None
    if prepared.model.format == "gguf" and prepared.model.path is not None:
        try:
            footprint = read_footprint(prepared.model.path)
        except (UsageError, ValueError, OSError):
            footprint = None
    kv = kv_figures(footprint, engine_info, prepared.settings.n_ctx)
    memory.update(kv)
    if kv["kv_cache_bytes"] is not None:
        metrics["kv_cache_bytes"] = summarize([float(kv["kv_cache_bytes"])])
    if footprint is None:
        return None
    w = prepared.spec.workload
    decode = metrics.get("decode_tps")
    threads = prepared.settings.threads
    figure = bandwidth.best("read", threads) if bandwidth is not None else None
    values, section = analyze_roofline(
        footprint,
        engine_info,
        w.n_depth,
        w.n_prompt,
        w.n_gen,
        list(decode.samples) if decode is not None else [],
        figure,
    )
    for name, vals in values.items():
        metrics[name] = summarize(vals)
    if bandwidth is not None:
        section["bandwidth"] = {
            "kernel": "read",
            "threads": bandwidth.threads_for(threads),
            "method": bandwidth.method,
            "host": bandwidth.host,
            "measured_at": bandwidth.measured_at,
            "size_bytes": bandwidth.size_bytes,
        }
    return section


def _sustain_section(
    reps: list[dict[str, Any]], series: Any, duration_s: float, bin_s: float
) -> dict[str, Any]:
    """The sustain time series and throttling verdict (see :mod:`meltbench.measure.sustain`)."""
    from meltbench.measure.sensor_analysis import sustain_channels
    from meltbench.measure.sustain import summarize_sustain

    timed = [r for r in reps if r.get("kind") == "timed"]
    requests = [(int(r["t_start_ns"]), list(r["token_ns"])) for r in timed]
    t0 = requests[0][0] if requests else 0
    end = max((r[1][-1] for r in requests if r[1]), default=None)
    temp, freq, power = sustain_channels(series)
    section = summarize_sustain(
        requests,
        t0,
        bin_s=bin_s,
        end_ns=end + 1 if end is not None else None,
        temp=temp,
        freq=freq,
        power=power,
    )
    section["duration_s"] = duration_s
    return section


def request_result(
    prepared: PreparedRun,
    records: list[dict[str, Any]],
    template: dict[str, Any] | None,
    *,
    failure: str | None,
    started_at: str,
    finished_at: str,
    engine: dict[str, Any] | None,
    environment: dict[str, Any] | None,
    memory: dict[str, Any] | None = None,
    load_ns: int | None = None,
    extra_warnings: list[BenchWarning] = (),
) -> RunResult:
    """The :class:`~meltbench.results.schema.RunResult` of a request run: the worker's
    (local, SSH) or the HTTP client's records, with whatever else was measured.

    A run whose every timed request failed is ``failed`` with the first error as its
    cause; records already measured are kept either way.
    """
    from meltbench.measure.stats import summarize
    from meltbench.results.request_runs import request_label, request_sections

    metrics, section, warnings = request_sections(prepared, records, template)
    if load_ns is not None:
        metrics["load_ms"] = summarize([load_ns / 1e6])
    peak = (memory or {}).get("peak_rss_bytes")
    if peak:
        metrics["peak_rss_bytes"] = summarize([float(peak)])
    counts = section["counts"]
    if failure is None and counts["requests"] and counts["ok"] == 0:
        first = next((r.get("error") for r in records if r.get("error")), "no reply")
        failure = f"every request failed; first: {first}"
    if failure is None and counts["requests"] == 0:
        failure = "no request was measured"
    result = new_result(
        prepared,
        failure=failure,
        started_at=started_at,
        finished_at=finished_at,
        test=request_label(prepared),
        settings=prepared.settings.to_dict(),
        model=model_facts(prepared),
        engine=engine or {"name": prepared.engine},
        environment=environment or {},
        metrics=metrics,
        memory=memory or {},
        warnings=[w.to_dict() for w in [*warnings, *extra_warnings]],
        requests=section,
    )
    return result
