"""The search: choose candidates, measure them through the sweep machinery, fit the
latency model, rank every shape and extract the Pareto fronts.

Per target, candidates are measured in rounds; each round is one sweep (one fresh worker
per candidate x workload point, committed as it finishes, failures stored as results),
whose source is ``<space file>#<target>#round<k>``, so ``--resume`` finds it again.

Strategies (:data:`meltbench.archsearch.space.STRATEGIES`):

- ``exhaustive``: every shape in the budget (refused above ``max_candidates``).
- ``random``: ``samples`` shapes drawn with ``random.Random(seed)``.
- ``model-guided``: round 1 measures ``max(5, samples // 2)`` shapes spread evenly over
  the parameter range; the latency model is fitted; each later round measures the
  unmeasured shapes on the *predicted* Pareto fronts (decode and prefill against
  parameters), spread evenly over the front, until ``samples`` are measured or the predicted
  fronts are all measured (at most :data:`MAX_ROUNDS` rounds). Choices depend only on
  stored results, so a resumed search picks the same candidates.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meltbench.archsearch.latency_model import LatencyFit, Row, bits_per_weight, features, fit
from meltbench.archsearch.pareto import pareto_front
from meltbench.archsearch.space import SearchSpace, Shape
from meltbench.errors import UsageError
from meltbench.results.schema import RunResult
from meltbench.results.significance import midranks
from meltbench.sweep.experiment import Experiment, Point, expand, order_points

__all__ = [
    "MAX_ROUNDS",
    "MEASURED",
    "PREDICTED",
    "Candidate",
    "TargetSearch",
    "analysis_of",
    "choose_initial",
    "compare_fronts",
    "run_search",
    "spread",
]

MAX_ROUNDS = 3
#: objectives measured per candidate: name -> (metric, how a workload point's value is
#: derived from its median). All are minimised; parameters are maximised.
MEASURED = ("decode_ms", "prefill_ms", "ttft_ms", "peak_rss_bytes", "j_per_token_decode")
#: objectives the latency model predicts.
PREDICTED = ("decode_ms", "prefill_ms")


@dataclass
class Candidate:
    """One shape of the space on one target.

    Attributes:
        shape: the decoder shape. round: the round it was measured in (None: never).
        measured: objective -> mean over the workload points of each point's median
            (``peak_rss_bytes``: the largest); only objectives some point measured.
        predicted: ``decode_ms`` and ``prefill_ms`` from the fitted model, mean over the
            same workload points (None before a fit).
        failure: the first failed point's cause. run_ids: the stored runs.
    """

    shape: Shape
    round: int | None = None
    measured: dict[str, float] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    run_ids: list[str] = field(default_factory=list)


@dataclass
class TargetSearch:
    """The search on one target: candidates (every shape in the budget), fits, sweeps."""

    target: str
    candidates: dict[str, Candidate]
    fits: dict[str, LatencyFit] = field(default_factory=dict)
    sweep_ids: list[str] = field(default_factory=list)
    rows: dict[str, list[Row]] = field(default_factory=dict)

    def measured_keys(self) -> list[str]:
        """Keys of the candidates measured without failure, fewest parameters first."""
        return [k for k, c in self.candidates.items() if c.round is not None and not c.failure]

    def front(self, objective: str, predicted: bool = False) -> list[str]:
        """Pareto front of parameters against ``objective`` (measured candidates, or every
        shape's prediction)."""
        pts = [(k, c.shape.n_params, (c.predicted if predicted else c.measured).get(objective))
               for k, c in self.candidates.items()
               if predicted or (c.round is not None and not c.failure)]  # fmt: skip
        return pareto_front([p for p in pts if p[2] is not None])  # type: ignore[misc]


def choose_initial(space: SearchSpace, shapes: list[Shape]) -> list[Shape]:
    """The first round's candidates for ``space.strategy`` (see the module docstring).

    Raises:
        UsageError: exhaustive over more than ``max_candidates`` shapes.
    """
    n = len(shapes)
    if space.strategy == "exhaustive":
        if n > space.max_candidates:
            raise UsageError(
                f"{n} shapes in the budget is more than max_candidates={space.max_candidates} "
                "for an exhaustive search; use --strategy random or model-guided, narrow the "
                "space, or raise --max-candidates"
            )
        return list(shapes)
    if space.strategy == "random":
        picked = random.Random(space.seed).sample(range(n), min(space.samples, n))
        return [shapes[i] for i in sorted(picked)]
    return spread(shapes, min(n, space.samples, max(5, space.samples // 2)))


def spread(shapes: list[Shape], k: int) -> list[Shape]:
    """``k`` of ``shapes`` (sorted by parameters) at evenly spaced positions, both ends
    included: indices ``round(i * (n - 1) / (k - 1))``."""
    n = len(shapes)
    if k >= n:
        return list(shapes)
    if k <= 1:
        return shapes[:k]
    return [shapes[i] for i in sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})]


def _bpw(space: SearchSpace) -> float:
    if space.engine == "transformers":
        dtype = str((space.workload.axes.get("dtype") or ["float32"])[0])
        return 16.0 if dtype in ("float16", "bfloat16") else 32.0
    return bits_per_weight(space.quant)


def _model_ref(space: SearchSpace, shape: Shape, threads: int | None) -> str:
    from meltbench.archsearch.materialize import config_path, materialize

    if space.engine == "transformers":
        return str(config_path(shape))
    return str(materialize(shape, space.quant, seed=space.seed, threads=threads))


def _experiment(space: SearchSpace, target: str, k: int, refs: list[str]) -> Experiment:
    axes = {**space.workload.axes, "model": refs, "engine": [space.engine]}
    if space.engine == "transformers":
        axes["weights"] = ["random"]
    settings = {**space.workload.settings, "name": f"{space.name}@{target}#round{k}"}
    if target != "local":
        settings["target"] = target
    text = f"{space.text_sha256}|{space.strategy}|{space.samples}|{space.seed}|{space.quant}|" \
           f"{space.budget}|{space.engine}"  # fmt: skip
    return Experiment(axes=axes, settings=settings,
                      source=Path(f"{space.source or space.name}#{target}#round{k}"),
                      text_sha256=hashlib.sha256(text.encode()).hexdigest())  # fmt: skip


def _median(result: RunResult, metric: str) -> float | None:
    s = result.metrics.get(metric)
    return s.median if s is not None and s.n and math.isfinite(s.median) else None


def _record(ts: TargetSearch, shape: Shape, result: RunResult, bpw: float) -> dict[str, float]:
    """One stored point's objectives; its fit rows are appended to ``ts.rows``."""
    w = result.spec.workload
    out: dict[str, float] = {}
    prefill, decode = _median(result, "prefill_tps"), _median(result, "decode_tps")
    if prefill and prefill > 0:
        out["prefill_ms"] = 1000.0 * w.n_prompt / prefill
        x = features(shape, "prefill", w.n_prompt, w.n_depth, w.n_gen, bpw)
        ts.rows.setdefault("prefill", []).append(Row(shape.key, x, out["prefill_ms"]))
    if decode and decode > 0:
        out["decode_ms"] = 1000.0 / decode
        x = features(shape, "decode", w.n_prompt, w.n_depth, w.n_gen, bpw)
        ts.rows.setdefault("decode", []).append(Row(shape.key, x, out["decode_ms"]))
    for metric in ("ttft_ms", "peak_rss_bytes", "j_per_token_decode"):
        value = _median(result, metric)
        if value is not None:
            out[metric] = value
    return out


def _absorb(ts: TargetSearch, by_ref: dict[str, Shape], results: list[RunResult], k: int,
            bpw: float) -> None:  # fmt: skip
    per: dict[str, list[dict[str, float]]] = {}
    for result in results:
        shape = by_ref.get(result.spec.model.ref)
        if shape is None:
            continue
        cand = ts.candidates[shape.key]
        cand.round = k
        cand.run_ids.append(result.run_id)
        if not result.ok:
            cand.failure = cand.failure or result.failure or "failed"
            continue
        per.setdefault(shape.key, []).append(_record(ts, shape, result, bpw))
    for key, records in per.items():
        cand = ts.candidates[key]
        for name in MEASURED:
            values = [r[name] for r in records if name in r]
            if values:
                agg = max(values) if name == "peak_rss_bytes" else sum(values) / len(values)
                cand.measured[name] = agg


def _refit(ts: TargetSearch, space: SearchSpace, points: list[Point], bpw: float) -> None:
    """Fit each phase that has rows from >= 2 candidates; predict every shape."""
    for phase in PREDICTED:
        rows = ts.rows.get(phase.removesuffix("_ms"), [])
        if len({r.candidate for r in rows}) >= 2:
            ts.fits[phase.removesuffix("_ms")] = fit(phase.removesuffix("_ms"), rows)
    for cand in ts.candidates.values():
        for phase, f in ts.fits.items():
            preds = []
            for p in points:
                n_prompt = int(p.params.get("n_prompt", 512))
                n_gen = int(p.params.get("n_gen", 128))
                n_depth = int(p.params.get("n_depth", 0))
                preds.append(f.predict(features(cand.shape, phase, n_prompt, n_depth, n_gen,
                                                bpw)))  # fmt: skip
            cand.predicted[f"{phase}_ms"] = sum(preds) / len(preds)


def _next_round(ts: TargetSearch, budget_left: int) -> list[Shape]:
    if budget_left <= 0 or not ts.fits:
        return []
    front = set()
    for objective in PREDICTED:
        front.update(ts.front(objective, predicted=True))
    todo = [c.shape for k, c in ts.candidates.items() if k in front and c.round is None]
    todo.sort(key=lambda s: (s.n_params, s.key))
    return spread(todo, budget_left)


def run_search(
    space: SearchSpace,
    targets: list[str],
    db: Path,
    *,
    resume: bool = False,
    threads: int | None = None,
    on_round: Callable[[str, int, int], None] | None = None,
    on_point_start: Callable[[int, int, Point], None] | None = None,
    on_point_done: Callable[[Point, RunResult | None], None] | None = None,
) -> list[TargetSearch]:
    """Measure the space on every target (in turn) and fit the latency models.

    Args:
        space: the parsed space (budget, quant, strategy, ... already overridden).
        targets: ``local``, ``ssh://...`` or names from the targets file.
        db: results database. resume: continue each round's stored sweep.
        threads: quantiser threads. on_round: ``(target, round, n_candidates)``.
        on_point_start, on_point_done: the sweep's progress hooks.

    Raises:
        UsageError: an empty budget, a refused exhaustive search, a bad point.
    """
    from meltbench.results.store import ResultStore
    from meltbench.sweep.command import analyze_sweep
    from meltbench.sweep.execute import prepare_points, run_sweep

    shapes, _ = space.shapes()
    if not shapes:
        raise UsageError("no shape of the space is inside the parameter budget; widen "
                         "--budget-params or the shape lists")  # fmt: skip
    initial = choose_initial(space, shapes)
    workload_points = expand(space.workload)
    bpw = _bpw(space)
    out = []
    for target in targets:
        ts = TargetSearch(target, {s.key: Candidate(s) for s in shapes})
        batch = initial
        k = 1
        while batch:
            if on_round:
                on_round(target, k, len(batch))
            by_ref = {_model_ref(space, s, threads): s for s in batch}
            exp = _experiment(space, target, k, list(by_ref))
            points = order_points(expand(exp))
            prepared = prepare_points(exp, points)
            resumed = False
            if resume and db.exists():
                with ResultStore(db, readonly=True) as store:
                    resumed = store.latest_sweep_for(str(exp.source)) is not None
            outcome = run_sweep(exp, points, prepared, db, resume=resumed,
                                on_point_start=on_point_start, on_point_done=on_point_done,
                                analyze=analyze_sweep)  # fmt: skip
            ts.sweep_ids.append(outcome.sweep_id)
            _absorb(ts, by_ref, outcome.results, k, bpw)
            _refit(ts, space, workload_points, bpw)
            measured = sum(c.round is not None for c in ts.candidates.values())
            k += 1
            if space.strategy != "model-guided" or k > MAX_ROUNDS:
                break
            batch = _next_round(ts, space.samples - measured)
        out.append(ts)
    analysis = analysis_of(space, out)
    with ResultStore(db) as store:
        for ts in out:
            sweep = store.get_sweep(ts.sweep_ids[-1])
            store.set_sweep_analysis(
                ts.sweep_ids[-1], {**(sweep.get("analysis") or {}), "arch_search": analysis}
            )
    return out


def compare_fronts(a: TargetSearch, b: TargetSearch, objective: str = "decode_ms") -> dict:
    """How two targets' measured fronts differ: the shapes on each, on both, and the
    Spearman rank correlation of ``objective`` over the shapes both measured.

    Returns:
        ``{"objective", "targets", "front_a", "front_b", "both", "spearman", "n"}``
        (``spearman`` None with fewer than 3 shared shapes or constant ranks).
    """
    fa, fb = a.front(objective), b.front(objective)
    shared = [
        k
        for k in a.measured_keys()
        if k in set(b.measured_keys())
        and objective in a.candidates[k].measured
        and objective in b.candidates[k].measured
    ]
    rho = None
    if len(shared) >= 3:
        ra = midranks([a.candidates[k].measured[objective] for k in shared])
        rb = midranks([b.candidates[k].measured[objective] for k in shared])
        rho = _pearson(ra, rb)
    return {"objective": objective, "targets": [a.target, b.target], "front_a": fa,
            "front_b": fb, "both": [k for k in fa if k in fb], "spearman": rho,
            "n": len(shared)}  # fmt: skip


def _pearson(x: list[float], y: list[float]) -> float | None:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def analysis_of(space: SearchSpace, searches: list[TargetSearch]) -> dict[str, Any]:
    """The JSON stored in each target's last sweep under ``analysis["arch_search"]`` and
    read by the report's ``arch-pareto`` figure."""
    _, dropped = space.shapes()
    targets = []
    for ts in searches:
        targets.append({
            "target": ts.target,
            "sweep_ids": ts.sweep_ids,
            "candidates": [{"key": k, "label": c.shape.label(), "n_params": c.shape.n_params,
                            "attention": c.shape.attention, "shape": c.shape.to_dict(),
                            "round": c.round, "measured": c.measured, "predicted": c.predicted,
                            "failure": c.failure, "run_ids": c.run_ids}
                           for k, c in ts.candidates.items()],
            "fits": {phase: f.to_dict() for phase, f in ts.fits.items()},
            "fronts": {o: ts.front(o) for o in MEASURED},
            "predicted_fronts": {o: ts.front(o, predicted=True) for o in PREDICTED},
        })  # fmt: skip
    comparison = compare_fronts(searches[0], searches[1]) if len(searches) >= 2 else None
    return {"space": space.name, "source": str(space.source) if space.source else None,
            "strategy": space.strategy, "samples": space.samples, "seed": space.seed,
            "quant": space.quant, "engine": space.engine, "budget_params": list(space.budget),
            "dropped": dropped, "targets": targets, "comparison": comparison}  # fmt: skip
