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

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meltbench.api_requests import (
    HTTP_ENGINES,
    check_request_workload,
    execute_http,
    refuse_load_options,
)
from meltbench.config import RunSpec, usage_error_from
from meltbench.engines.base import EngineSettings
from meltbench.errors import RunInterrupted, UsageError
from meltbench.harness.worker import PROTOCOL
from meltbench.models.resolve import ResolvedModel, resolve_model
from meltbench.parameters import flat_fields
from meltbench.registry import ENGINES
from meltbench.results.assemble import result_from_measurement
from meltbench.results.schema import RunResult
from meltbench.workloads.base import RequestSet

__all__ = [
    "PreparedRun",
    "build_spec",
    "execute",
    "execute_or_raise",
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
    ``None`` values are left at their defaults. A request workload (``workload`` other
    than ``synthetic``) defaults to ``reps=1``: one pass over its requests.

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
    from meltbench.forward.run import forward_defaults

    forward_defaults(nested)
    workload = nested.get("workload", {})
    if workload.get("kind", "synthetic") != "synthetic" and "reps" not in workload:
        workload["reps"] = 1  # a request workload's reps are passes over its whole set
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
        requests: a request workload's requests (None for synthetic pp/tg).
        forward: a forward task's build request (:func:`meltbench.forward.run.build_request`;
            None for text generation).
    """

    spec: RunSpec
    engine: str
    model: ResolvedModel
    settings: EngineSettings
    requests: RequestSet | None = None
    forward: dict[str, Any] | None = None

    def job(self) -> dict[str, Any]:
        """The JSON job handed to the worker."""
        return {
            "protocol": PROTOCOL,
            "engine": self.engine,
            "model": self.model.handle().to_dict(),
            "settings": self.settings.to_dict(),
            "workload": self.spec.workload.model_dump(),
            "profile": self.spec.profile,
            "requests": None if self.requests is None else self.requests.to_dict(),
            "forward": self.forward,
        }


def prepare(spec: RunSpec) -> PreparedRun:
    """Check a spec and resolve its defaults, without measuring anything.

    Raises:
        UsageError: unknown engine, engine library not installed, unknown engine
            option, a model that is missing, a directory, not GGUF or truncated, an
            unknown sensor name, or a sysfs root that is not a directory.
    """
    from meltbench.environment import physical_cores

    if spec.workload.forward:
        return _prepare_forward(spec)
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
    requests = None
    if spec.workload.requests:
        requests = check_request_workload(spec, engine_cls, kind)
    else:
        refuse_load_options(spec)
    model = resolve_model(
        spec.model.ref,
        formats=tuple(engine_cls.model_formats),
        weights=spec.model.weights,
        dtype=spec.engine.dtype,
    )
    return PreparedRun(
        spec=spec, engine=engine_name, model=model, settings=settings, requests=requests
    )


def _prepare_forward(spec: RunSpec) -> PreparedRun:
    """:func:`prepare` for ``--task encode|classify`` (:mod:`meltbench.forward`)."""
    from meltbench.environment import physical_cores
    from meltbench.forward.run import prepare_forward
    from meltbench.registry import FORWARD_ENGINES

    engine_cls = FORWARD_ENGINES.load(spec.engine.name)
    if engine_cls.missing_requirements():
        missing = ", ".join(engine_cls.missing_requirements())
        raise UsageError(
            f"engine {engine_cls.name!r} needs {missing}, which is not installed; "
            f"{engine_cls.install_hint}"
        )
    info, request = prepare_forward(spec, engine_cls)
    threads = spec.engine.threads or physical_cores()
    request["threads"] = threads
    settings = EngineSettings(threads=threads, n_ctx=0, batch=spec.workload.batch_size,
                              ubatch=spec.workload.batch_size, seed=spec.workload.seed,
                              dtype="float32", device="cpu",
                              options=dict(spec.engine.options))  # fmt: skip
    path = info.get("path")
    model = ResolvedModel(ref=spec.model.ref, alias=None, format="forward",
                          path=Path(path) if path else None, info=info)  # fmt: skip
    _check_sensor_settings(spec)
    return PreparedRun(
        spec=spec, engine=engine_cls.name, model=model, settings=settings, forward=request
    )


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
    if prepared.requests is not None and prepared.engine in HTTP_ENGINES:
        return execute_http(prepared, on_event)
    job = prepared.job()
    if sustain_s is not None:
        job["sustain"] = {"duration_s": sustain_s}
    kind = target_kind(spec.target)
    bandwidth = None
    if prepared.forward is not None:  # local only (prepare refuses other targets)
        from meltbench.harness.measurement import measure
        from meltbench.results.forward_run import forward_result

        return forward_result(prepared, measure(job, run_settings, on_event))
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
    return result_from_measurement(prepared, measurement, sustain_s, sustain_bin_s, bandwidth)


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


def execute_or_raise(prepared: PreparedRun, **execute_options: Any) -> RunResult:
    """:func:`execute`, raising on Ctrl-C: for callers that store results themselves (a
    sweep stores a point only when it completed; resuming reruns an interrupted one).

    Raises:
        RunInterrupted: the run was interrupted; ``exc.result`` is its failed record.
    """
    result, interrupted = execute(prepared, **execute_options)
    if interrupted:
        raise RunInterrupted(result)
    return result


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
