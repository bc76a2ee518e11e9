"""Does the harness slow the model down? meltbench vs a bare llama-cpp-python loop.

Three arms, measured side by side in one run, each in its own fresh process, with the
same model, threads, prompt length and generation length:

- ``bare``: a greedy loop over llama.cpp's C API at llama.cpp's own context defaults
  (``llama_decode`` of the prompt, argmax of the logits, ``llama_decode`` of that token,
  ...), timed with ``time.perf_counter_ns``: ``benchmarks/fidelity.py``'s loop in its
  ``greedy`` form. (Before meltbench's llama.cpp engine went to the C API, this arm was
  llama-cpp-python's ``Llama.eval``; ``benchmarks/fidelity.py --wrapper`` still runs that.)
- ``meltbench``: ``meltbench.run`` with its defaults (worker process, JSON events, RSS
  sampled at 50 Hz).
- ``meltbench@100Hz`` and ``meltbench@1Hz``: the same with the RSS sampler at 100 Hz and
  1 Hz, to isolate the sampler's perturbation.

Arms are interleaved and their order rotated each round, so slow drift of the machine
(thermal, other tenants) hits every arm alike. Printed: medians of every arm and the
ratios ``meltbench / bare`` (target >= 0.98) and sampler ``N Hz / 1 Hz`` (target >= 0.99).

Usage: ``python benchmarks/overhead.py [--n-prompt 256 --n-gen 64 --reps 5 --rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def bare(path: str, args: argparse.Namespace, threads: int) -> dict[str, list[float]]:
    """The greedy C-API loop of ``benchmarks/fidelity.py`` (llama.cpp's defaults)."""
    from fidelity import BARE_CHILD, child

    return child(BARE_CHILD, path, args, threads, "greedy")


def ours(args: argparse.Namespace, threads: int, memory_hz: float | None) -> dict[str, list[float]]:
    import meltbench

    result = meltbench.run(
        n_prompt=args.n_prompt,
        n_gen=args.n_gen,
        reps=args.reps,
        warmup=args.warmup,
        seed=args.seed,
        threads=threads,
        batch=args.batch,
        ubatch=args.batch,
        memory_hz=memory_hz,  # None = meltbench's default
    )
    if not result.ok:
        raise SystemExit(f"meltbench run failed: {result.failure}")
    return {k: list(result.metrics[k].samples) for k in ("prefill_tps", "decode_tps")}


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fidelity import workload_parser

    args = workload_parser(__doc__.splitlines()[0]).parse_args()

    from meltbench.environment import physical_cores
    from meltbench.models.resolve import resolve_model

    path = str(resolve_model("gemma3-270m-q4_k_m").path)
    threads = args.threads or physical_cores()
    arms = {
        "bare": lambda: bare(path, args, threads),
        "meltbench": lambda: ours(args, threads, None),
        "meltbench@100Hz": lambda: ours(args, threads, 100.0),
        "meltbench@1Hz": lambda: ours(args, threads, 1.0),
    }
    samples: dict[str, dict[str, list[float]]] = {
        a: {"prefill_tps": [], "decode_tps": []} for a in arms
    }
    names = list(arms)
    t0 = time.time()
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            got = arms[name]()
            for metric, values in got.items():
                samples[name][metric] += values
        print(f"round {rnd + 1}/{args.rounds} done ({time.time() - t0:.0f} s)", file=sys.stderr)

    med = {a: {m: statistics.median(v) for m, v in ms.items()} for a, ms in samples.items()}
    print(
        f"model gemma3-270m Q4_K_M, threads {threads}, pp{args.n_prompt}+tg{args.n_gen}, "
        f"{args.rounds} rounds x {args.reps} reps per arm"
    )
    print(f"{'arm':<16}{'prefill tok/s':>16}{'decode tok/s':>16}")
    for arm, m in med.items():
        print(f"{arm:<16}{m['prefill_tps']:>16.2f}{m['decode_tps']:>16.2f}")
    for metric in ("prefill_tps", "decode_tps"):
        ratio = med["meltbench"][metric] / med["bare"][metric]
        print(f"ratio meltbench/bare {metric}: {ratio:.4f} (target >= 0.98)")
    for arm, label in (("meltbench", "50Hz (default)"), ("meltbench@100Hz", "100Hz")):
        for metric in ("prefill_tps", "decode_tps"):
            ratio = med[arm][metric] / med["meltbench@1Hz"][metric]
            print(f"ratio sampler {label}/1Hz {metric}: {ratio:.4f} (target >= 0.99)")


if __name__ == "__main__":
    main()
