"""Does the harness slow the model down? meltbench vs a bare llama-cpp-python loop.

Three arms, measured side by side in one run, each in its own fresh process, with the
same model, threads, prompt length and generation length:

- ``bare``: the simplest greedy loop a user would write: ``Llama.eval(prompt)``, argmax
  of the logits, ``Llama.eval([token])``... timed with ``time.perf_counter_ns``.
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
import json
import statistics
import subprocess
import sys
import time

BARE_CHILD = r"""
import json, random, sys, time
import numpy as np
import llama_cpp

path, threads, n_prompt, n_gen, reps, warmup, seed = sys.argv[1:8]
threads, n_prompt, n_gen, reps, warmup, seed = (
    int(x) for x in (threads, n_prompt, n_gen, reps, warmup, seed)
)
llm = llama_cpp.Llama(path, n_ctx=n_prompt + n_gen, n_batch=512, n_ubatch=512,
                      n_threads=threads, n_threads_batch=threads, verbose=False)
n_vocab = llm.n_vocab()
rng = random.Random(seed)
prompt = [rng.randrange(n_vocab) for _ in range(n_prompt)]
vocab = llama_cpp.llama_model_get_vocab(llm.model)
if llama_cpp.llama_vocab_get_add_bos(vocab):
    prompt[0] = llama_cpp.llama_vocab_bos(vocab)

def argmax():
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

out = {"prefill_tps": [], "decode_tps": []}
for i in range(warmup + reps):
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    t0 = time.perf_counter_ns()
    llm.eval(prompt)
    tok = argmax()
    t_first = time.perf_counter_ns()
    for _ in range(n_gen - 1):
        llm.eval([tok])
        tok = argmax()
    t_last = time.perf_counter_ns()
    if i >= warmup:
        out["prefill_tps"].append(n_prompt / ((t_first - t0) / 1e9))
        out["decode_tps"].append((n_gen - 1) / ((t_last - t_first) / 1e9))
print(json.dumps(out))
"""


def bare(path: str, args: argparse.Namespace, threads: int) -> dict[str, list[float]]:
    cmd = [
        sys.executable,
        "-c",
        BARE_CHILD,
        path,
        str(threads),
        str(args.n_prompt),
        str(args.n_gen),
        str(args.reps),
        str(args.warmup),
        str(args.seed),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours(args: argparse.Namespace, threads: int, memory_hz: float | None) -> dict[str, list[float]]:
    import meltbench

    result = meltbench.run(
        n_prompt=args.n_prompt,
        n_gen=args.n_gen,
        reps=args.reps,
        warmup=args.warmup,
        seed=args.seed,
        threads=threads,
        memory_hz=memory_hz,  # None = meltbench's default
    )
    if not result.ok:
        raise SystemExit(f"meltbench run failed: {result.failure}")
    return {k: list(result.metrics[k].samples) for k in ("prefill_tps", "decode_tps")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompt", type=int, default=256)
    parser.add_argument("--n-gen", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

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
