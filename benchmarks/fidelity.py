"""Do meltbench's numbers match what a llama-bench user sees? Side by side, one run.

Arms, each in its own fresh process, interleaved and rotated every round so that slow
drift of the machine (thermal, other tenants) hits every arm alike:

- ``bare``: a llama-bench-style loop written here against llama.cpp's C API as
  llama-cpp-python exposes it, sharing no code with meltbench: every context parameter
  at llama.cpp's default (``llama_context_default_params()``: flash attention ``auto``,
  ...) except ``n_ctx``, ``n_batch``, ``n_ubatch`` and the thread counts; synthetic
  tokens; prompt in ``n_batch`` chunks then ``llama_synchronize``; each generated token
  one ``llama_decode`` of a random token + ``llama_synchronize``, no sampling
  (llama-bench's ``test_prompt`` / ``test_gen``). Timed with ``time.perf_counter_ns``.
  (With the extra argument ``greedy`` the next token is the argmax of the logits instead:
  ``benchmarks/overhead.py`` uses that form.)
- ``engine``: ``meltbench run --timing engine`` (the CLI, with its defaults: worker
  process, JSON events, RSS sampled at 50 Hz, sensors).
- ``generation``: ``meltbench run`` (the default timing: decode includes the greedy
  argmax over the logits). Its decode rate should be the bare rate with the reported
  sampling cost added to each token: ``1 / (1 / bare + sample_ms / 1000)``.
- ``wrapper`` (with ``--wrapper``): llama-cpp-python's high-level ``Llama(...)`` with
  its own defaults and ``Llama.eval`` + argmax, the loop meltbench used before it went
  to the C API (it shows where the old gap came from).

Printed: medians per arm, ``engine / bare`` (target >= 0.98 for prefill and decode) and
``generation / predicted`` (target: within 1%).

Usage: ``python benchmarks/fidelity.py [--n-prompt 256 --n-gen 64 --reps 5 --rounds 3]``
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
import llama_cpp as lib

path, threads, n_prompt, n_gen, reps, warmup, seed, n_batch = sys.argv[1:9]
threads, n_prompt, n_gen, reps, warmup, seed, n_batch = (
    int(x) for x in (threads, n_prompt, n_gen, reps, warmup, seed, n_batch)
)
greedy = len(sys.argv) > 9 and sys.argv[9] == "greedy"  # next token = argmax, as an app
quiet = lib.llama_log_callback(lambda *a: None)  # kept alive: llama.cpp calls it later
lib.llama_log_set(quiet, None)
lib.llama_backend_init()
model = lib.llama_model_load_from_file(path.encode(), lib.llama_model_default_params())
cp = lib.llama_context_default_params()
cp.n_ctx = n_prompt + n_gen
cp.n_batch = n_batch
cp.n_ubatch = n_batch
cp.n_threads = threads
cp.n_threads_batch = threads
ctx = lib.llama_init_from_model(model, cp)
vocab = lib.llama_model_get_vocab(model)
n_vocab = lib.llama_vocab_n_tokens(vocab)
rng = random.Random(seed)
prompt = [rng.randrange(n_vocab) for _ in range(n_prompt)]
if lib.llama_vocab_get_add_bos(vocab):
    prompt[0] = lib.llama_vocab_bos(vocab)
one = (lib.llama_token * 1)()
if greedy:
    import numpy as np

    def argmax():
        ptr = lib.llama_get_logits_ith(ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())

out = {"prefill_tps": [], "decode_tps": []}
for i in range(warmup + reps):
    lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
    t0 = time.perf_counter_ns()
    for j in range(0, n_prompt, n_batch):
        chunk = prompt[j : j + n_batch]
        arr = (lib.llama_token * len(chunk))(*chunk)
        assert lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(chunk))) == 0
    lib.llama_synchronize(ctx)
    t_first = time.perf_counter_ns()
    tok = argmax() if greedy else rng.randrange(n_vocab)
    t_first = time.perf_counter_ns() if greedy else t_first
    for _ in range(n_gen - 1):
        one[0] = tok
        assert lib.llama_decode(ctx, lib.llama_batch_get_one(one, 1)) == 0
        lib.llama_synchronize(ctx)
        tok = argmax() if greedy else rng.randrange(n_vocab)
    t_last = time.perf_counter_ns()
    if i >= warmup:
        out["prefill_tps"].append(n_prompt / ((t_first - t0) / 1e9))
        out["decode_tps"].append((n_gen - 1) / ((t_last - t_first) / 1e9))
print(json.dumps(out))
"""

WRAPPER_CHILD = r"""
import json, random, sys, time
import numpy as np
import llama_cpp

path, threads, n_prompt, n_gen, reps, warmup, seed, n_batch = sys.argv[1:9]
threads, n_prompt, n_gen, reps, warmup, seed, n_batch = (
    int(x) for x in (threads, n_prompt, n_gen, reps, warmup, seed, n_batch)
)
llm = llama_cpp.Llama(path, n_ctx=n_prompt + n_gen, n_batch=n_batch, n_ubatch=n_batch,
                      n_threads=threads, n_threads_batch=threads, verbose=False)
n_vocab = llm.n_vocab()
rng = random.Random(seed)
prompt = [rng.randrange(n_vocab) for _ in range(n_prompt)]

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


def child(
    code: str, path: str, args: argparse.Namespace, threads: int, *extra: str
) -> dict[str, list[float]]:
    """Run a child loop (``BARE_CHILD`` or ``WRAPPER_CHILD``) in a fresh process."""
    argv = [path, threads, args.n_prompt, args.n_gen, args.reps, args.warmup, args.seed]
    cmd = [sys.executable, "-c", code, *map(str, argv), str(args.batch), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours(args: argparse.Namespace, threads: int, timing: str) -> dict[str, list[float]]:
    cmd = [sys.executable, "-m", "meltbench.cli", "run", "--no-db", "-f", "json", "--timing"]
    cmd += [timing, "-p", str(args.n_prompt), "-n", str(args.n_gen), "-r", str(args.reps)]
    cmd += ["--warmup", str(args.warmup), "--seed", str(args.seed), "-t", str(threads)]
    cmd += ["-b", str(args.batch), "--ubatch", str(args.batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"meltbench run failed:\n{proc.stderr[-2000:]}")
    m = json.loads(proc.stdout)["metrics"]
    got = {k: list(m[k]["samples"]) for k in ("prefill_tps", "decode_tps")}
    got["sample_ms"] = list(m["sample_ms"]["samples"]) if "sample_ms" in m else []
    return got


def workload_parser(description: str) -> argparse.ArgumentParser:
    """The workload and round flags shared by this script and ``overhead.py``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n-prompt", type=int, default=256)
    parser.add_argument("--n-gen", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch")
    parser.add_argument("--threads", type=int, default=None)
    return parser


def main() -> None:
    parser = workload_parser(__doc__.splitlines()[0])
    parser.add_argument("--wrapper", action="store_true", help="add the Llama.eval arm")
    args = parser.parse_args()

    from meltbench.environment import physical_cores
    from meltbench.models.resolve import resolve_model

    path = str(resolve_model("gemma3-270m-q4_k_m").path)
    threads = args.threads or physical_cores()
    arms = {
        "bare": lambda: child(BARE_CHILD, path, args, threads),
        "engine": lambda: ours(args, threads, "engine"),
        "generation": lambda: ours(args, threads, "generation"),
    }
    if args.wrapper:
        arms["wrapper"] = lambda: child(WRAPPER_CHILD, path, args, threads)
    samples: dict[str, dict[str, list[float]]] = {a: {} for a in arms}
    paired: dict[str, list[float]] = {"prefill_tps": [], "decode_tps": []}
    names = list(arms)
    t0 = time.time()
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        this_round: dict[str, dict[str, list[float]]] = {}
        for name in order:
            this_round[name] = arms[name]()
            for metric, values in this_round[name].items():
                samples[name].setdefault(metric, []).extend(values)
        for metric, ratios in paired.items():  # engine / bare within one round
            ratios.append(
                statistics.median(this_round["engine"][metric])
                / statistics.median(this_round["bare"][metric])
            )
        print(f"round {rnd + 1}/{args.rounds} done ({time.time() - t0:.0f} s)", file=sys.stderr)

    med = {a: {m: statistics.median(v) for m, v in ms.items() if v} for a, ms in samples.items()}
    print(
        f"model gemma3-270m Q4_K_M, threads {threads}, pp{args.n_prompt}+tg{args.n_gen}, "
        f"n_batch = n_ubatch = {args.batch}, {args.rounds} rounds x {args.reps} reps per arm"
    )
    print(f"{'arm':<12}{'prefill tok/s':>16}{'decode tok/s':>16}{'sample ms':>12}")
    for arm, m in med.items():
        sample = f"{m['sample_ms']:.4f}" if "sample_ms" in m else "-"
        print(f"{arm:<12}{m['prefill_tps']:>16.2f}{m['decode_tps']:>16.2f}{sample:>12}")
    for metric in ("prefill_tps", "decode_tps"):
        ratio = med["engine"][metric] / med["bare"][metric]
        rounds = ", ".join(f"{r:.3f}" for r in paired[metric])
        print(
            f"ratio engine/bare {metric}: {ratio:.4f} (target >= 0.98); per round: {rounds}; "
            f"median of rounds {statistics.median(paired[metric]):.4f}"
        )
    sample_ms = med["generation"].get("sample_ms", 0.0)
    predicted = 1.0 / (1.0 / med["bare"]["decode_tps"] + sample_ms / 1000.0)
    ratio = med["generation"]["decode_tps"] / predicted
    print(
        f"generation decode / (bare with {sample_ms:.4f} ms sampling per token = "
        f"{predicted:.2f} tok/s): {ratio:.4f} (target within 1%)"
    )
    ratio = med["generation"]["decode_tps"] / med["bare"]["decode_tps"]
    print(f"ratio generation/bare decode_tps: {ratio:.4f}")
    if args.wrapper:
        for metric in ("prefill_tps", "decode_tps"):
            ratio = med["wrapper"][metric] / med["bare"][metric]
            print(f"ratio wrapper(Llama.eval, flash_attn off)/bare {metric}: {ratio:.4f}")


if __name__ == "__main__":
    main()
