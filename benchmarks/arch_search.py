"""The arch-search latency model's held-out error, against the proxy it replaces.

Runs (or resumes) ``meltbench arch-search SPACE --strategy exhaustive`` so that every
shape of the space is measured, then reports, per phase, the leave-one-candidate-out
error of two predictors on the same measurements (the measurement is the reference):

- ``latency model``: meltbench's non-negative fit on GFLOP, weight GB, KV GB and layers
  (:mod:`meltbench.archsearch.latency_model`), refitted without the held-out shape;
- ``params only``: ``t = a + b * n_params`` by ordinary least squares, refitted without
  the held-out shape: the assumption behind choosing shapes by parameter count.

Errors are per candidate (mean over the workload points, as the search ranks them): mean
absolute percentage error (MAPE), the largest, and the Spearman rank correlation of the
held-out predictions with the measurements (ranking is what the search uses).

    python benchmarks/arch_search.py                       # examples/arch-space-tiny.yaml
    python benchmarks/arch_search.py SPACE.yaml --db runs.db
    python benchmarks/arch_search.py --db runs.db --sweep ID  # a stored search, any strategy
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    for r, i in enumerate(order, 1):
        ranks[i] = float(r)
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho (no tie correction: measured times are continuous)."""
    rx, ry = _ranks(x), _ranks(y)
    n = len(x)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True)) / (n * (n * n - 1))


def params_only_loo(sizes: list[float], times: list[float]) -> list[float]:
    """Leave-one-out predictions of ``t = a + b * n`` (ordinary least squares)."""
    out = []
    for i in range(len(sizes)):
        xs = [s for j, s in enumerate(sizes) if j != i]
        ys = [t for j, t in enumerate(times) if j != i]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
        out.append(my + b * (sizes[i] - mx))
    return out


def errors(measured: list[float], predicted: list[float]) -> tuple[float, float, float]:
    """(MAPE %, max APE %, Spearman rho)."""
    ape = [abs(p - m) / m * 100 for m, p in zip(measured, predicted, strict=True)]
    return sum(ape) / len(ape), max(ape), spearman(measured, predicted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("space", nargs="?", default=str(ROOT / "examples/arch-space-tiny.yaml"))
    parser.add_argument("--db", help="results database (default: a temporary one)")
    parser.add_argument("--sweep", help="read this stored search's analysis instead of running")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    db = Path(args.db) if args.db else Path(tmp.name) / "runs.db"
    if args.sweep:
        from meltbench.results.store import ResultStore

        with ResultStore(db, readonly=True) as store:
            analysis = store.get_sweep(args.sweep)["analysis"]["arch_search"]
    else:
        cmd = [sys.executable, "-m", "meltbench.cli", "arch-search", args.space, "--strategy",
               "exhaustive", "--db", str(db), "-q", "-f", "json"]  # fmt: skip
        if db.exists():
            cmd.append("--resume")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            sys.stderr.write(proc.stderr)
            return proc.returncode
        analysis = json.loads(proc.stdout)
    print(f"strategy {analysis['strategy']}, {analysis['samples']} samples")
    print(f"space {analysis['space']}: {analysis['quant']} on {analysis['engine']}")
    print("| target | phase | candidates | predictor | held-out MAPE % | max % | Spearman |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for target in analysis["targets"]:
        cands = {c["key"]: c for c in target["candidates"] if c["round"] and not c["failure"]}
        for phase, f in target["fits"].items():
            by_key: dict[str, list[tuple[float, float]]] = {}
            for key, measured, predicted in f["held_out"]:
                by_key.setdefault(key, []).append((measured, predicted))
            keys = [k for k in by_key if k in cands]
            meas = [sum(m for m, _ in by_key[k]) / len(by_key[k]) for k in keys]
            ours = [sum(p for _, p in by_key[k]) / len(by_key[k]) for k in keys]
            base = params_only_loo([float(cands[k]["n_params"]) for k in keys], meas)
            for name, pred in (("latency model", ours), ("params only", base)):
                mape, worst, rho = errors(meas, pred)
                print(f"| {target['target']} | {phase} | {len(keys)} | {name} | {mape:.1f} | "
                      f"{worst:.1f} | {rho:.2f} |")  # fmt: skip
            ratio = errors(meas, ours)[0] / errors(meas, base)[0]
            print(f"| {target['target']} | {phase} | | ratio model / params-only MAPE: "
                  f"{ratio:.2f} | | |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
