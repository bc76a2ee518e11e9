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
from meltbench.measure.analysis import analyze_reps
from meltbench.measure.runner import run_worker
from meltbench.measure.warnings import BenchWarning, check_memory_rate
from meltbench.measure.worker import PROTOCOL
from meltbench.models.resolve import ResolvedModel, resolve_model
from meltbench.registry import ENGINES
from meltbench.results.schema import Repetition, RunResult

__all__ = ["PreparedRun", "build_spec", "execute", "load_results", "prepare", "run"]

#: flat keyword -> (section, field) of RunSpec; also used to name CLI flags in errors.
FLAT_FIELDS: dict[str, tuple[str, str]] = {
    "model": ("model", "ref"),
    "weights": ("model", "weights"),
    "engine": ("engine", "name"),
    "dtype": ("engine", "dtype"),
    "device": ("engine", "device"),
    "endpoint": ("engine", "endpoint"),
    "threads": ("engine", "threads"),
    "ctx": ("engine", "ctx"),
    "batch": ("engine", "batch"),
    "ubatch": ("engine", "ubatch"),
    "engine_options": ("engine", "options"),
    "n_prompt": ("workload", "n_prompt"),
    "n_gen": ("workload", "n_gen"),
    "n_depth": ("workload", "n_depth"),
    "reps": ("workload", "reps"),
    "warmup": ("workload", "warmup"),
    "seed": ("workload", "seed"),
    "memory_hz": ("sensors", "memory_hz"),
}

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
        if key in ("timeout_s", "profile", "memory_limit_bytes"):
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
            option, or a model that is missing, a directory, not GGUF or truncated.
    """
    from meltbench.environment import physical_cores

    engine_cls = ENGINES.load(spec.engine.name)
    engine_name = engine_cls.name
    missing = engine_cls.missing_requirements()
    if missing:
        hint = engine_cls.install_hint or ENGINES.install_hints.get(
            engine_name, "install the engine's library"
        )
        raise UsageError(
            f"engine {engine_name!r} needs {', '.join(missing)}, which is not installed; {hint}"
        )
    unknown = engine_cls.unknown_options(spec.engine.options)
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
    )
    problem = engine_cls.check_settings(settings)
    if problem:
        raise UsageError(problem)
    model = resolve_model(
        spec.model.ref,
        formats=tuple(engine_cls.model_formats),
        weights=spec.model.weights,
        dtype=spec.engine.dtype,
    )
    return PreparedRun(spec=spec, engine=engine_name, model=model, settings=settings)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def execute(prepared: PreparedRun, on_event: EventCallback | None = None) -> tuple[RunResult, bool]:
    """Measure a prepared run in a fresh worker process.

    Returns:
        ``(result, interrupted)``; ``result.status`` is ``failed`` (with ``failure``)
        when the worker crashed, was killed, timed out, raised, or was interrupted; the
        repetitions it completed are kept and summarized.
    """
    spec = prepared.spec
    started = _now()
    interrupted = False
    try:
        out = run_worker(
            prepared.job(),
            timeout_s=spec.timeout_s,
            memory_hz=spec.sensors.memory_hz,
            on_event=on_event,
            memory_limit_bytes=spec.memory_limit_bytes,
        )
    except KeyboardInterrupt as exc:
        out = exc.output  # type: ignore[attr-defined]
        interrupted = True
    finished = _now()

    sampler = out.memory
    kernel = (out.done or {}).get("memory") or {}
    sampled_peak = sampler.peak_bytes if sampler else None
    candidates = [v for v in (kernel.get("vm_hwm_bytes"), sampled_peak) if v]
    peak = max(candidates) if candidates else None
    memory = {
        "peak_rss_bytes": peak,
        "peak_rss_sampled_bytes": sampled_peak,
        "vm_hwm_bytes": kernel.get("vm_hwm_bytes"),
        "ru_maxrss_bytes": kernel.get("ru_maxrss_bytes"),
        "requested_hz": spec.sensors.memory_hz,
        "achieved_hz": sampler.achieved_hz if sampler else None,
        "samples": [[s.t_ns, s.rss_bytes] for s in sampler.samples] if sampler else [],
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

    model_facts = {
        "ref": prepared.model.ref,
        "alias": prepared.model.alias,
        "format": prepared.model.format,
        "weights": spec.model.weights,
    }
    model_facts.update(prepared.model.info)
    if model_facts.get("n_params") is None and out.engine:
        model_facts["n_params"] = out.engine.get("n_params")  # random weights: built ones
    result = RunResult(
        run_id=uuid.uuid4().hex,
        status="failed" if failure else "ok",
        failure=failure,
        started_at=started,
        finished_at=finished,
        test=spec.workload.label,
        spec=spec,
        settings=prepared.settings.to_dict(),
        model=model_facts,
        engine=out.engine or {"name": prepared.engine},
        environment=out.environment or {},
        metrics=analysis.metrics,
        cold=analysis.cold,
        fidelity=analysis.fidelity,
        memory=memory,
        warnings=[w.to_dict() for w in warnings],
        profile=out.profile,
        repetitions=[
            Repetition.model_validate({k: v for k, v in r.items() if k != "event"})
            for r in out.reps
        ],
    )
    return result, interrupted


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
    prepared = prepare(spec)
    from meltbench.results.store import ResultStore

    store = ResultStore(Path(db)) if db is not None else None
    try:
        result, interrupted = execute(prepared, on_event)
        if store is not None:
            store.save(result)
    finally:
        if store is not None:
            store.close()
    if interrupted:
        raise RunInterrupted(result)
    return result


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

    from meltbench.results.store import ResultStore, default_db_path
    from meltbench.results.tables import flat_record

    with ResultStore(Path(db) if db is not None else default_db_path(), readonly=True) as store:
        if sweep is not None:
            results = store.sweep_results(str(store.get_sweep(sweep)["sweep_id"]))
        else:
            results = list(store.iter_results())
    return pd.DataFrame([flat_record(r) for r in results])
