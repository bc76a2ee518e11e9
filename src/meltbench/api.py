"""The Python surface: ``run(spec) -> RunResult``.

A run goes through three steps, each usable alone:

1. :func:`prepare` checks everything that can be checked without measuring (engine
   installed, options known, model file valid, context large enough) and raises
   :class:`~meltbench.errors.UsageError` with a one-line message otherwise.
2. :func:`execute` runs the prepared job in a fresh worker process and turns what it
   reported into a :class:`~meltbench.results.schema.RunResult`, ``ok`` or ``failed``
   (with its cause, keeping every repetition that completed).
3. :func:`run` does both and, given a database, stores the result in one transaction.
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meltbench.config import RunSpec, usage_error_from
from meltbench.engines.base import EngineSettings
from meltbench.errors import RunInterrupted, UsageError
from meltbench.harness.worker import PROTOCOL
from meltbench.measure.analysis import analyze_reps
from meltbench.measure.warnings import BenchWarning, check_memory_rate
from meltbench.models.resolve import ResolvedModel, resolve_model
from meltbench.parameters import flat_fields
from meltbench.registry import ENGINES
from meltbench.results.schema import Repetition, RunResult

__all__ = [
    "PreparedRun",
    "build_spec",
    "execute",
    "load_results",
    "prepare",
    "run",
    "sustain",
    "target_kind",
]

#: flat keyword -> (section, field) of RunSpec (from :data:`meltbench.parameters.PARAMETERS`).
FLAT_FIELDS: dict[str, tuple[str, str]] = flat_fields()
#: top-level RunSpec fields that build_spec accepts as keywords
_TOP_FIELDS = ("timeout_s", "profile", "memory_limit_bytes", "target")

EventCallback = Callable[[dict[str, Any]], None]


def build_spec(flags: dict[str, str] | None = None, **options: Any) -> RunSpec:
    """Build a :class:`RunSpec` from flat keywords (``n_prompt=64, threads=2, ...``).

    Keywords are those of :data:`FLAT_FIELDS` plus ``timeout_s``, ``profile`` and
    ``memory_limit_bytes``;
    ``None`` values are left at their defaults.

    Args:
        flags: optional map from field path (``"workload.reps"``) to the name shown in
            error messages (``"--reps"``).

    Raises:
        UsageError: unknown keyword or invalid value, in one line.
    """
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in _TOP_FIELDS:
            top[key] = value
        elif key in FLAT_FIELDS:
            section, name = FLAT_FIELDS[key]
            nested.setdefault(section, {})[name] = value
        else:
            raise UsageError(f"unknown run option {key!r}; use one of: {', '.join(FLAT_FIELDS)}")
    try:
        return RunSpec.model_validate({**nested, **top})
    except ValidationError as exc:
        raise usage_error_from(exc, flags) from None


@dataclass(frozen=True)
class PreparedRun:
    """A checked run, ready for a worker.

    Attributes:
        spec: the validated spec.
        engine: canonical engine name.
        model: the resolved model file and its header facts.
        settings: the engine settings actually used (defaults filled in).
    """

    spec: RunSpec
    engine: str
    model: ResolvedModel
    settings: EngineSettings

    def job(self) -> dict[str, Any]:
        """The JSON job handed to the worker."""
        return {
            "protocol": PROTOCOL,
            "engine": self.engine,
            "model": self.model.handle().to_dict(),
            "settings": self.settings.to_dict(),
            "workload": self.spec.workload.model_dump(),
            "profile": self.spec.profile,
        }


def prepare(spec: RunSpec) -> PreparedRun:
    """Check a spec and resolve its defaults, without measuring anything.

    Raises:
        UsageError: unknown engine, engine library not installed, unknown engine
            option, a model that is missing, a directory, not GGUF or truncated, an
            unknown sensor name, or a sysfs root that is not a directory.
    """
    from meltbench.environment import physical_cores

    engine_cls = ENGINES.load(spec.engine.name)
    engine_name = engine_cls.name
    kind = target_kind(spec.target)
    android = kind == "adb"
    if android:
        _check_android_spec(spec, engine_name)
    # On a remote target the engine's library lives on the device (checked there).
    missing = engine_cls.missing_requirements() if kind == "local" else []
    if missing:
        hint = engine_cls.install_hint or ENGINES.install_hints.get(
            engine_name, "install the engine's library"
        )
        raise UsageError(
            f"engine {engine_name!r} needs {', '.join(missing)}, which is not installed; {hint}"
        )
    options = {
        k: v for k, v in spec.engine.options.items() if not (android and k in _ANDROID_OPTIONS)
    }
    unknown = engine_cls.unknown_options(options)
    if unknown:
        allowed = ", ".join(sorted(engine_cls.allowed_options)) or "none"
        raise UsageError(
            f"engine {engine_name!r} has no option {', '.join(unknown)}; allowed: {allowed}"
        )
    if spec.profile and not engine_cls.supports_profile:
        raise UsageError(f"engine {engine_name!r} has no profiler; drop --profile")
    if spec.workload.n_depth and not engine_cls.supports_depth:
        raise UsageError(
            f"engine {engine_name!r} does not support --n-depth (it keeps no KV cache that "
            "meltbench controls between requests); use --n-depth 0"
        )
    settings = EngineSettings(
        threads=spec.engine.threads or physical_cores(),
        n_ctx=spec.n_ctx,
        batch=spec.engine.batch,
        ubatch=spec.engine.ubatch or spec.engine.batch,
        seed=spec.workload.seed,
        dtype=spec.engine.dtype,
        device=spec.engine.device,
        endpoint=spec.engine.endpoint,
        options=dict(spec.engine.options),
        timing=spec.workload.timing,
    )
    problem = engine_cls.check_settings(settings)
    if problem:
        raise UsageError(problem)
    _check_sensor_settings(spec)
    model = resolve_model(
        spec.model.ref,
        formats=tuple(engine_cls.model_formats),
        weights=spec.model.weights,
        dtype=spec.engine.dtype,
    )
    return PreparedRun(spec=spec, engine=engine_name, model=model, settings=settings)


def target_kind(target: str) -> str:
    """``local``, ``ssh`` or ``adb`` for a target URL or a name in the targets file.

    Raises:
        UsageError: an unknown name or a malformed URL.
    """
    if target == "local":
        return "local"
    for kind in ("ssh", "adb"):
        if target.startswith(f"{kind}://"):
            return kind
    from meltbench.targets.config import parse_target

    return parse_target(target).kind


#: engine options of Android runs (llama-bench pushed over adb), not of the Python engine
_ANDROID_OPTIONS = ("llama_bench",)


def _check_android_spec(spec: RunSpec, engine_name: str) -> None:
    """Android targets run llama.cpp's own llama-bench: refuse what it cannot do."""
    if engine_name != "llama.cpp":
        raise UsageError(
            f"adb targets run llama.cpp's llama-bench binary, not {engine_name!r}; use "
            "--engine llama.cpp, or an ssh:// target (Termux) for Python engines"
        )
    if spec.profile:
        raise UsageError("adb targets have no profiler; drop --profile")
    if spec.workload.n_depth:
        raise UsageError("adb targets do not support --n-depth yet; use --n-depth 0")


def _check_sensor_settings(spec: RunSpec) -> None:
    """Unknown sensor names and a missing sysfs root are usage errors, found before
    anything is measured or stored."""
    from meltbench.registry import SENSORS

    names = SENSORS.ordered_names()
    unknown = [n for n in spec.sensors.use or () if n not in names and n != "none"]
    if unknown:
        raise UsageError(
            f"--sensors: unknown sensor {', '.join(map(repr, unknown))}; choose from: "
            f"{', '.join(names)}, or 'none'"
        )
    if target_kind(spec.target) == "local" and not os.path.isdir(spec.sensors.root):
        raise UsageError(
            f"--sysfs-root {spec.sensors.root!r} is not a directory; give a sysfs tree (or /)"
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def execute(
    prepared: PreparedRun,
    on_event: EventCallback | None = None,
    *,
    sustain_s: float | None = None,
    sustain_bin_s: float = 5.0,
) -> tuple[RunResult, bool]:
    """Measure a prepared run in a fresh worker process, with the sensors beside it.

    Before the worker starts, the sensors are probed, the device state is read and the
    idle baseline is sampled (:func:`meltbench.sensors.session.open_session`).

    Args:
        prepared: from :func:`prepare`.
        on_event: receives each worker event as it arrives.
        sustain_s: generate back to back for this many seconds instead of ``reps``
            requests (``meltbench sustain``); the result gets a ``sustain`` section.
        sustain_bin_s: width of the time bins of the sustain series, seconds.

    Returns:
        ``(result, interrupted)``; ``result.status`` is ``failed`` (with ``failure``)
        when the worker crashed, was killed, timed out, raised, or was interrupted; the
        repetitions it completed are kept and summarized.

    Raises:
        UsageError: an unknown sensor name or a sysfs root that is not a directory.
    """
    spec = prepared.spec
    run_settings: dict[str, Any] = {
        "timeout_s": spec.timeout_s,
        "memory_hz": spec.sensors.memory_hz,
        "memory_limit_bytes": spec.memory_limit_bytes,
        "sensors": spec.sensors.model_dump(mode="json"),
        "cooldown": spec.cooldown.model_dump() if spec.cooldown.active and not sustain_s else None,
    }
    job = prepared.job()
    if sustain_s is not None:
        job["sustain"] = {"duration_s": sustain_s}
    kind = target_kind(spec.target)
    bandwidth = None
    if kind != "adb" and prepared.model.format == "gguf":
        bandwidth = known_bandwidth(spec.target)
        if bandwidth is None:  # measured once per target, after this run's worker
            run_settings["bandwidth"] = {
                "threads": [prepared.settings.threads],
                "trials": 3,
                "kernels": ["read"],
            }
    if kind == "adb":
        from meltbench.targets.adb import AdbTarget
        from meltbench.targets.android import execute_android
        from meltbench.targets.config import parse_target

        url = parse_target(spec.target).url
        return execute_android(prepared, on_event, target=AdbTarget(url))
    if kind == "local":
        from meltbench.harness.measurement import measure

        measurement = measure(job, run_settings, on_event)
    else:
        from meltbench.targets.remote_run import measure_on_target

        measurement = measure_on_target(spec.target, prepared, job, run_settings, on_event)
    if measurement.bandwidth:
        from meltbench.measure.bandwidth import BandwidthResult, store_bandwidth

        bandwidth = BandwidthResult.from_dict(measurement.bandwidth)
        store_bandwidth(spec.target, bandwidth)
    return _result_of(prepared, measurement, sustain_s, sustain_bin_s, bandwidth)


#: environment variable that sets the roof of every run, GB/s (e.g. a datasheet figure)
BANDWIDTH_ENV = "MELTBENCH_BANDWIDTH_GBS"


def known_bandwidth(target: str) -> Any:
    """The memory bandwidth to use as ``target``'s roof without measuring, or None.

    ``$MELTBENCH_BANDWIDTH_GBS`` (GB/s, 1e9 bytes/s) wins; else the figure cached by
    ``meltbench bandwidth`` or an earlier run on that target.

    Raises:
        UsageError: ``$MELTBENCH_BANDWIDTH_GBS`` is not a positive number.
    """
    from meltbench.measure.bandwidth import BandwidthResult, cached_bandwidth

    text = os.environ.get(BANDWIDTH_ENV)
    if text:
        try:
            gbs = float(text)
            if not gbs > 0:
                raise ValueError
        except ValueError:
            raise UsageError(
                f"${BANDWIDTH_ENV}={text!r} is not a bandwidth; give GB/s as a number > 0 "
                "or unset it"
            ) from None
        return BandwidthResult(
            results={"read": {1: gbs * 1e9}}, method=f"${BANDWIDTH_ENV}", host=target
        )
    return cached_bandwidth(target)


def _result_of(
    prepared: PreparedRun,
    measurement: Any,
    sustain_s: float | None,
    sustain_bin_s: float,
    bandwidth: Any = None,
) -> tuple[RunResult, bool]:
    """Turn a :class:`~meltbench.harness.measurement.Measurement` into a result.

    ``bandwidth`` (a :class:`~meltbench.measure.bandwidth.BandwidthResult`) is the roof of
    the decode roofline; None leaves the bound and efficiency out.
    """
    from meltbench.measure.sensor_analysis import analyze_sensors
    from meltbench.measure.stats import summarize
    from meltbench.sensors.sampler import SensorSeries

    spec = prepared.spec
    out = measurement.output()
    interrupted = measurement.interrupted
    started, finished = measurement.started_at, measurement.finished_at or _now()
    mem = measurement.memory
    kernel = (out.done or {}).get("memory") or {}
    sampled_peak = mem.get("peak_sampled_bytes")
    candidates = [v for v in (kernel.get("vm_hwm_bytes"), sampled_peak) if v]
    peak = max(candidates) if candidates else None
    memory = {
        "peak_rss_bytes": peak,
        "peak_rss_sampled_bytes": sampled_peak,
        "vm_hwm_bytes": kernel.get("vm_hwm_bytes"),
        "ru_maxrss_bytes": kernel.get("ru_maxrss_bytes"),
        "requested_hz": spec.sensors.memory_hz,
        "achieved_hz": mem.get("achieved_hz"),
        "policy": mem.get("policy"),
        "samples": mem.get("samples") or [],
    }

    failure = out.failure_cause(spec.timeout_s)
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

    model_facts = {
        "ref": prepared.model.ref,
        "alias": prepared.model.alias,
        "format": prepared.model.format,
        "weights": spec.model.weights,
    }
    model_facts.update(prepared.model.info)
    if model_facts.get("n_params") is None and out.engine:
        model_facts["n_params"] = out.engine.get("n_params")  # random weights: built ones
    test = spec.workload.label
    if sustain_s is not None:
        test = f"sustain{sustain_s:g}s:{test}"
    result = RunResult(
        run_id=uuid.uuid4().hex,
        status="failed" if failure else "ok",
        failure=failure,
        started_at=started,
        finished_at=finished,
        test=test,
        spec=spec,
        settings=prepared.settings.to_dict(),
        model=model_facts,
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
        target=spec.target,
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


def run(
    spec: RunSpec | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    on_event: EventCallback | None = None,
    **options: Any,
) -> RunResult:
    """Run one benchmark and return its result.

    Args:
        spec: a full spec; or leave it None and pass flat keywords (see
            :func:`build_spec`: ``model``, ``n_prompt``, ``n_gen``, ``n_depth``, ``reps``,
            ``warmup``, ``threads``, ``ctx``, ``seed``, ``timeout_s``, ...).
        db: SQLite database to store the run in (opened, and checked writable, before
            measuring); None = do not store.
        on_event: receives each worker event as it arrives (for progress displays).

    Returns:
        the :class:`RunResult`; check ``result.ok`` -- a crashed worker gives a
        ``failed`` result, not an exception.

    Raises:
        UsageError: bad input (nothing is measured or stored).
        RunInterrupted: (a KeyboardInterrupt) after storing the interrupted run as failed.
    """
    if spec is None:
        spec = build_spec(**options)
    elif options:
        raise UsageError("pass either a RunSpec or keyword options, not both")
    return _execute_and_store(prepare(spec), db, on_event)


def _execute_and_store(
    prepared: PreparedRun,
    db: str | os.PathLike[str] | None,
    on_event: EventCallback | None,
    **execute_options: Any,
) -> RunResult:
    """Open (and check) the database, measure, store the result in one transaction.

    Raises:
        UsageError: the database cannot be opened (nothing is measured).
        RunInterrupted: after storing the interrupted run as failed.
    """
    from meltbench.results.store import ResultStore

    store = ResultStore(Path(db)) if db is not None else None
    try:
        result, interrupted = execute(prepared, on_event, **execute_options)
        if store is not None:
            store.save(result)
    finally:
        if store is not None:
            store.close()
    if interrupted:
        raise RunInterrupted(result)
    return result


def sustain(
    spec: RunSpec | None = None,
    *,
    duration_s: float = 600.0,
    bin_s: float = 5.0,
    db: str | os.PathLike[str] | None = None,
    on_event: EventCallback | None = None,
    **options: Any,
) -> RunResult:
    """Generate continuously for ``duration_s`` seconds and record how throughput,
    temperature, frequency and power evolve (``meltbench sustain``).

    Requests of ``spec.workload`` (prompt + generation) are sent back to back after the
    warmup; every one is kept as a timed repetition. The result's ``sustain`` section
    holds the binned time series (``bin_s`` seconds) and the throttling verdict
    (:func:`meltbench.measure.sustain.detect_throttling`).

    Raises:
        UsageError: bad input (nothing is measured or stored), including
            ``duration_s <= 0`` or ``bin_s <= 0``.
        RunInterrupted: after storing the interrupted run as failed.
    """
    if not duration_s > 0 or not bin_s > 0:
        raise UsageError("sustain duration and bin must be > 0 seconds")
    target = spec.target if spec is not None else str(options.get("target") or "local")
    if target_kind(target) == "adb":
        raise UsageError(
            "sustain needs per-token timestamps, which llama-bench on adb targets does not "
            "give; use an ssh:// target (Termux) or a local run"
        )
    if spec is None:
        spec = build_spec(**options)
    elif options:
        raise UsageError("pass either a RunSpec or keyword options, not both")
    return _execute_and_store(
        prepare(spec), db, on_event, sustain_s=duration_s, sustain_bin_s=bin_s
    )


def load_results(db: str | os.PathLike[str] | None = None, sweep: str | None = None) -> Any:
    """Stored runs as a pandas DataFrame: one row per run, tidy columns.

    Columns are those of :func:`meltbench.results.tables.flat_record`: identity (run_id,
    status, failure, started_at, test, model, quant, engine, dtype, device, threads,
    n_prompt/n_gen/n_depth, reps, ...), then ``{metric}_{stat}`` for every metric and
    statistic (n, mean, median, stddev, min, max, p90, p99, ci95_low, ci95_high), the
    fidelity ratios ``{metric}_vs_engine`` and the cold run ``cold_{metric}``.

    Args:
        db: database path; default ``$MELTBENCH_DB`` or ``./meltbench.db``.
        sweep: only the runs of this sweep id (or unique prefix).

    Raises:
        ImportError: pandas is not installed (``pip install 'meltbench[report]'``).
        UsageError: no database at ``db``, or an unknown sweep.
    """
    import pandas as pd

    from meltbench.results.location import default_db_path
    from meltbench.results.store import ResultStore
    from meltbench.results.tables import flat_record

    with ResultStore(Path(db) if db is not None else default_db_path(), readonly=True) as store:
        if sweep is not None:
            results = store.sweep_results(str(store.get_sweep(sweep)["sweep_id"]))
        else:
            results = list(store.iter_results())
    return pd.DataFrame([flat_record(r) for r in results])
