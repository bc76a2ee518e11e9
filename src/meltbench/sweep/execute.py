"""Running a sweep: plan, check every point, run the missing ones, analyze.

- Every point is checked (engine installed, options, model file, conversions) before the
  first one runs, so a typo in point 40 does not surface after an hour.
- Each point runs in its own fresh worker process (pyperf's isolation): its peak memory
  (VmHWM) is its own, and an out-of-memory kill or a crash ends only that point. Points
  are ordered so that one model's points run back to back (``order_points``), which
  keeps its file in the page cache; the reload per point is the price of isolation and
  is visible as ``load_ms``.
- Each finished point is committed at once with its sweep id and point key; a unique
  index makes a second copy impossible. Resume runs exactly the points without a stored
  run. A Ctrl-C'd point is not stored (it runs again on resume); a point that failed by
  itself (OOM, crash, timeout) is stored with its cause and not re-run.
- Cool-down between points: ``cooldown_s`` seconds, then (``cooldown_margin_c``) until
  the hottest temperature sensor is within that margin of its reading before the first
  point, at most ``cooldown_timeout_s`` (default 300 s). The wait is recorded in the
  next point's ``sensors["cooldown_before"]``; without a temperature sensor only the
  fixed wait applies and the record says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meltbench.api import PreparedRun, build_spec, execute_or_raise, prepare
from meltbench.errors import UsageError
from meltbench.parameters import default, flag_names
from meltbench.results.schema import RunResult
from meltbench.results.store import ResultStore
from meltbench.sweep.experiment import Experiment, Point
from meltbench.timestamps import utc_now

__all__ = [
    "DEFAULT_RATES",
    "SweepOutcome",
    "estimate_seconds",
    "open_sweep",
    "point_options",
    "prepare_points",
    "run_sweep",
]

#: Assumed prefill and decode tok/s for estimates when no stored run of the same model
#: and engine exists (roughly Gemma 3 270M Q4_K_M on 2 CPU cores).
DEFAULT_RATES = (500.0, 30.0)
#: RunSpec field path -> the experiment's parameter name, for error messages.
_AXIS_NAMES = flag_names("sweep")  # errors name a point's setting by its file key
_WORKER_OVERHEAD_S = 2.0  # worker start, imports, environment collection
_LOAD_S = 1.0


def point_options(exp: Experiment, point: Point) -> dict[str, Any]:
    """Flat :func:`meltbench.api.build_spec` options of a point (quant excluded)."""
    opts = {k: v for k, v in point.params.items() if k != "quant"}
    opts["engine_options"] = dict(exp.settings.get("engine_options") or {}) or None
    opts["timeout_s"] = exp.settings.get("timeout_s")
    opts["memory_limit_bytes"] = exp.settings.get("memory_limit_bytes")
    opts["target"] = exp.settings.get("target")
    return opts


def requantized_options(options: dict[str, Any], quant: str) -> tuple[dict[str, Any], str]:
    """Options pointing at the ``quant`` variant of the point's GGUF (built once, cached),
    and the note saying what it was made from."""
    from meltbench.models.cache import cached_gguf_info
    from meltbench.models.quantize import cached_variant, variant_note
    from meltbench.models.resolve import resolve_model

    source = resolve_model(options.get("model") or "gemma3-270m-q4_k_m", formats=("gguf",))
    variant = cached_variant(source.path, quant)  # type: ignore[arg-type]
    note = variant_note(source.info, cached_gguf_info(variant))
    return {**options, "model": str(variant)}, note


def prepare_points(
    exp: Experiment, points: list[Point], notes: list[str] | None = None
) -> list[PreparedRun]:
    """Check and resolve every point (no measuring); requantized variants are built here.

    Args:
        notes: if given, receives one line per distinct requantized variant.

    Raises:
        UsageError: the first bad point, named by its label.
    """
    prepared = []
    for i, point in enumerate(points, 1):
        try:
            options = point_options(exp, point)
            if point.params.get("quant"):
                options, note = requantized_options(options, str(point.params["quant"]))
                if notes is not None and note not in notes:
                    notes.append(note)
            prepared.append(prepare(build_spec(flags=_AXIS_NAMES, **options)))
        except UsageError as exc:
            raise UsageError(f"point {i} ({point.label()}): {exc}") from None
    return prepared


def _rates(store: ResultStore | None, prepared: PreparedRun) -> tuple[float, float]:
    stored = (
        store.recent_medians(
            str(prepared.model.path), prepared.engine, ("prefill_tps", "decode_tps")
        )
        if store is not None
        else {}
    )
    return (
        stored.get("prefill_tps") or DEFAULT_RATES[0],
        stored.get("decode_tps") or DEFAULT_RATES[1],
    )


def estimate_seconds(
    prepared: list[PreparedRun], cooldown_s: float = 0.0, store: ResultStore | None = None
) -> float:
    """Rough wall time of the points, seconds.

    Per point: worker start (2 s) + load (1 s) + (warmup + reps) x (n_depth + n_prompt) /
    prefill_tps + (warmup + reps) x n_gen / decode_tps, plus the cool-down between points.
    The rates are the medians of stored runs of the same model file and engine, else
    :data:`DEFAULT_RATES`.
    """
    total = 0.0
    for p in prepared:
        prefill, decode = _rates(store, p)
        w = p.spec.workload
        n_requests = w.warmup + w.reps
        total += _WORKER_OVERHEAD_S + _LOAD_S
        total += n_requests * ((w.n_depth + w.n_prompt) / prefill + w.n_gen / decode)
    return total + cooldown_s * max(len(prepared) - 1, 0)


@dataclass
class SweepOutcome:
    """What a sweep did.

    Attributes:
        sweep_id: the sweep's id.
        ran: points run in this invocation (their results).
        skipped: points already stored (resume).
        results: every stored run of the sweep, in run order.
        analysis: scaling fits and context search results (stored with the sweep).
    """

    sweep_id: str
    ran: list[RunResult] = field(default_factory=list)
    skipped: int = 0
    results: list[RunResult] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)


def open_sweep(
    store: ResultStore,
    *,
    name: str,
    source: str | None,
    source_sha256: str | None,
    planned: list[dict[str, Any]],
    settings: dict[str, Any],
    resume: str | bool,
    what: str = "sweep",
) -> tuple[str, bool]:
    """(sweep_id, resumed): a new sweep row, or the one to resume after checking that its
    file is unchanged and its planned points (``{"key", "params"}`` dicts) are the same.

    Raises:
        UsageError: nothing to resume, a changed file, or different points.
    """
    if resume:
        sweep = (
            store.get_sweep(resume)
            if isinstance(resume, str)
            else (store.latest_sweep_for(source) if source else None)
        )
        if sweep is None:
            raise UsageError(
                f"no {what} of {source or 'this experiment'} to resume in {store.path}; "
                "run without --resume to start one"
            )
        if source and sweep["source"] == source and sweep["source_sha256"] != source_sha256:
            raise UsageError(
                f"{source} changed since {what} {sweep['sweep_id'][:12]} started; restore it, "
                "or run without --resume to start a new one"
            )
        if {p["key"] for p in sweep["points"]} != {p["key"] for p in planned}:
            raise UsageError(
                f"the points differ from those of {what} {sweep['sweep_id'][:12]}; run "
                "without --resume to start a new one"
            )
        return str(sweep["sweep_id"]), True
    sweep_id = uuid.uuid4().hex
    store.create_sweep(
        sweep_id, name, utc_now(), planned, settings, source=source, source_sha256=source_sha256
    )
    return sweep_id, False


def _point_cooldown(
    settings: dict[str, Any], prepared: list[PreparedRun]
) -> Callable[[], dict[str, Any]] | None:
    """``wait() -> record`` between sweep points, or None when no cool-down is set.

    The idle temperature is the hottest sensor's reading now, before the first point.
    """
    from meltbench.measure.cooldown import CooldownRule, wait_for_cooldown

    seconds = float(settings.get("cooldown_s") or 0.0)
    margin = settings.get("cooldown_margin_c")
    if not seconds and margin is None:
        return None
    rule = CooldownRule(
        seconds=seconds,
        margin_c=float(margin) if margin is not None else None,
        timeout_s=float(settings.get("cooldown_timeout_s") or default("cooldown_timeout_s")),
    )
    read_hottest = None
    idle_c = None
    if rule.margin_c is not None and prepared:
        from meltbench.sensors.discover import hottest_reader, probe_sensors
        from meltbench.sensors.sysfs import SysFS

        sensors = prepared[0].spec.sensors
        use = None if sensors.use is None else list(sensors.use)
        read_hottest = hottest_reader(probe_sensors(SysFS(sensors.root), use))
        idle_c = read_hottest() if read_hottest is not None else None

    def wait() -> dict[str, Any]:
        return wait_for_cooldown(rule, read_hottest, idle_c)

    return wait


def run_sweep(
    exp: Experiment,
    points: list[Point],
    prepared: list[PreparedRun],
    db: Path,
    *,
    resume: str | bool = False,
    on_point_start: Callable[[int, int, Point], None] | None = None,
    on_point_done: Callable[[Point, RunResult | None], None] | None = None,
    analyze: Callable[[list[RunResult]], dict[str, Any]] | None = None,
) -> SweepOutcome:
    """Run the points of ``exp`` that are not stored yet, then analyze the sweep.

    Args:
        points, prepared: from :func:`~meltbench.sweep.experiment.order_points` and
            :func:`prepare_points` (same order).
        db: results database; every point is committed as soon as it finishes.
        resume: False = new sweep; True = the latest sweep of ``exp.source``; a string =
            that sweep id (or unique prefix).
        on_point_start, on_point_done: progress hooks (``done`` gets None when skipped).
        analyze: turns all the sweep's results into the stored analysis.

    Raises:
        UsageError: nothing to resume, a changed file, or different points.
        RunInterrupted: on Ctrl-C (the interrupted point is not stored; resume reruns it).
    """
    with ResultStore(db) as store:
        sweep_id, _ = open_sweep(
            store,
            name=exp.name,
            source=str(exp.source) if exp.source else None,
            source_sha256=exp.text_sha256,
            planned=[{"key": p.key, "params": p.params} for p in points],
            settings=exp.settings,
            resume=resume,
        )
        outcome = SweepOutcome(sweep_id=sweep_id)
        done = store.sweep_points_done(sweep_id)
        cool = _point_cooldown(exp.settings, prepared)
        first = True
        for i, (point, prep) in enumerate(zip(points, prepared, strict=True), 1):
            if point.key in done:
                outcome.skipped += 1
                if on_point_done:
                    on_point_done(point, None)
                continue
            record = cool() if (cool is not None and not first) else None
            first = False
            if on_point_start:
                on_point_start(i, len(points), point)
            result = execute_or_raise(prep)
            if record is not None:
                result.sensors["cooldown_before"] = record
            store.save(result, sweep_id=sweep_id, point_key=point.key)
            outcome.ran.append(result)
            if on_point_done:
                on_point_done(point, result)
        outcome.results = store.sweep_results(sweep_id)
        if analyze is not None:
            outcome.analysis = analyze(outcome.results)
            store.set_sweep_analysis(sweep_id, outcome.analysis)
    return outcome
