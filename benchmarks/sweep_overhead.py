"""How much wall time does a sweep add around its points?

Runs a 12-point sweep (cool-down off) of the default model and compares its wall time
with the sum of the points' own measured time: load + every request (warmup included)
+ KV depth fills. The difference is worker start-up (Python, imports, environment
collection), checking points, and storing results. Prints the ratio (target <= 1.15).

Usage: ``python benchmarks/sweep_overhead.py [--n-prompt 256 --n-gen 32 --reps 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def point_time_s(result) -> float:
    """Load + all requests + depth fills of one run, seconds (from its raw timestamps)."""
    total = (result.metrics["load_ms"].median / 1e3) if "load_ms" in result.metrics else 0.0
    for rep in result.repetitions:
        if rep.token_ns:
            total += (rep.token_ns[-1] - rep.t_start_ns) / 1e9
        total += (rep.depth_fill_ns or 0) / 1e9
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompt", default="64-2048*2")  # 6 lengths x 2 thread counts
    parser.add_argument("--n-gen", type=int, default=32)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()

    from meltbench.results.store import ResultStore
    from meltbench.sweep.execute import prepare_points, run_sweep
    from meltbench.sweep.experiment import expand, order_points, parse_experiment

    exp = parse_experiment(
        {"n_prompt": args.n_prompt, "threads": [1, 2], "n_gen": args.n_gen,
         "reps": args.reps, "warmup": 1},
        "<benchmark>",
        {},
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "sweep.db"
        t0 = time.perf_counter()
        points = order_points(expand(exp))
        prepared = prepare_points(exp, points)
        outcome = run_sweep(exp, points, prepared, db)
        wall = time.perf_counter() - t0
        with ResultStore(db, readonly=True) as store:
            results = store.sweep_results(outcome.sweep_id)
    inside = sum(point_time_s(r) for r in results)
    n_failed = sum(not r.ok for r in results)
    print(f"{len(results)} points ({n_failed} failed), cool-down off")
    print(f"sweep wall time        {wall:8.2f} s")
    print(f"sum of point times     {inside:8.2f} s  (load + requests + depth fills)")
    print(f"overhead per point     {(wall - inside) / len(results):8.2f} s")
    print(f"ratio wall / points: {wall / inside:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
