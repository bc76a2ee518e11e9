"""Which engine is fastest for the default model on this machine? One table.

Every engine runs the same model (Gemma 3 270M: the Q4_K_M GGUF for llama.cpp, its
dequantized Hugging Face folder for PyTorch and MLX, an ONNX build of that folder for
ONNX Runtime, llama.cpp's own OpenAI-compatible server for the HTTP engine), the same
synthetic prompt (same seed) and the same workload, measured by the same worker code.
The last column compares the greedy tokens with llama.cpp's: how many positions hold the
same token, and the first position that differs ("-" if none). Prompts are random token
ids, so the first token is often a near-tie between two candidates: a difference there
followed by agreement is rounding, not a wrong engine.

Usage: ``python benchmarks/engines.py [--n-prompt 128 --n-gen 32 --reps 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

ARMS: list[tuple[str, dict[str, Any]]] = [
    ("llama.cpp", {}),
    ("transformers", {"dtype": "float32"}),
    ("transformers", {"dtype": "bfloat16"}),
    ("mlx", {}),
    ("onnxruntime", {"dtype": "int4"}),
    ("openai", {}),
    ("mnn", {"dtype": "int4"}),
    ("executorch", {"dtype": "8da4w"}),
]

OWN_MNN = """
import importlib, json, os, sys
cfg, ids, n, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = importlib.import_module("MNN.llm").create(cfg)
llm.set_config({"thread_num": threads, "sampler_type": "greedy"})
llm.load()
rows = []
for _ in range(4):  # the first is a warm-up
    llm.reset(); llm.generate_init()
    out = llm._c_obj.generate(ids, n)
    llm._c_obj.set_context({"generate_str": ""})  # get_context crashes on partial UTF-8
    c = llm._c_obj.get_context()
    rows.append([c["prompt_len"] / (c["prefill_us"] / 1e6),
                 (c["gen_seq_len"] - 1) / (c["decode_us"] / 1e6), c["prompt_len"], len(out)])
print(json.dumps(rows[1:]), flush=True)
os._exit(0)
"""
"""MNN's own ``generate(ids, n)`` with its context timers (``prefill_us``, ``decode_us``):
the runtime's figures for the same prompt, in a fresh process."""

OWN_EXECUTORCH = """
import json, sys
import executorch.extension.llm.custom_ops.custom_ops
from executorch.extension.pybindings import portable_lib
from executorch.extension.llm.runner import TextLLMRunner, GenerationConfig
pte, tok, text = sys.argv[1:4]
n, threads = int(sys.argv[4]), int(sys.argv[5])
portable_lib._unsafe_reset_threadpool(threads)
runner = TextLLMRunner(pte, tok)
rows = []
for _ in range(4):  # the first is a warm-up
    stats = {}
    def on_stats(s):
        stats.update(json.loads(s.to_json_string()))
    runner.reset()
    cfg = GenerationConfig(echo=False, max_new_tokens=n, temperature=0.0, warming=True, num_bos=0)
    runner.generate(text, cfg, lambda piece: None, on_stats)
    pre = (stats["prompt_eval_end_ms"] - stats["inference_start_ms"]) / 1e3
    dec = (stats["inference_end_ms"] - stats["prompt_eval_end_ms"]) / 1e3
    rows.append([stats["prompt_tokens"] / pre, (stats["generated_tokens"] - 1) / dec,
                 stats["prompt_tokens"]])
print(json.dumps(rows[1:]), flush=True)
"""
"""ExecuTorch's own LLM runner (``TextLLMRunner``, the C++ runner's pybindings) and its
``Stats``: a text prompt of about the same length (the runner takes text), greedy."""


def own_figures(engine: str, result: Any, n_gen: int, threads: int) -> str:
    """The runtime's own prefill / decode tok/s on the same model file (median of 3)."""
    import json
    import statistics

    from meltbench.engines.openai_prompts import words_text

    path = result.model.get("path") or ""
    n_prompt = result.spec.workload.n_prompt
    if engine == "mnn":
        from meltbench.workloads.synthetic import synthetic_tokens

        ids = synthetic_tokens(n_prompt, 262144, result.spec.workload.seed, bos=2)
        args = [OWN_MNN, f"{path}/config.json", json.dumps(ids), str(n_gen), str(threads)]
    elif engine == "executorch":
        from pathlib import Path

        source = json.loads(Path(path).with_suffix(".json").read_text())["source"]
        tok = [str(Path(source) / "tokenizer.json")]  # the HF folder it was exported from
        text = words_text(range(n_prompt - 1))
        args = [OWN_EXECUTORCH, path, tok[0] if tok else "", text, str(n_gen), str(threads)]
    else:
        return ""
    proc = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True,
                          timeout=1800, check=False)  # fmt: skip
    try:
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return f"{engine}: its own figures failed: {proc.stderr.strip()[-300:]}"
    pre = statistics.median(r[0] for r in rows)
    dec = statistics.median(r[1] for r in rows)
    m = result.metrics
    return (
        f"{engine}: runtime's own prefill {pre:.1f} t/s, decode {dec:.2f} t/s "
        f"(prompt {rows[0][2]}); meltbench / own: prefill "
        f"{m['prefill_tps'].median / pre:.3f}, decode {m['decode_tps'].median / dec:.3f}"
    )


@contextlib.contextmanager
def llama_server(model_path: str, threads: int) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            model_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            str(threads),
            "--logits_all",  # default True: logits for every prompt token, 2x TTFT
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def agreement(reference: list[int], tokens: list[int]) -> str:
    """``"equal/total, first diff at i"`` for two greedy token lists."""
    same = [x == y for x, y in zip(reference, tokens, strict=False)]
    first = next((i for i, ok in enumerate(same) if not ok), None)
    where = "-" if first is None else str(first)
    return f"{sum(same)}/{len(tokens)}, first diff {where}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prompt", type=int, default=128)
    parser.add_argument("--n-gen", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--engines", default="", help="comma list: only these (and llama.cpp)")
    parser.add_argument("--executorch-model", help="a .pte (default: the alias, exported once)")
    args = parser.parse_args()
    wanted = {e for e in args.engines.split(",") if e} | {"llama.cpp"}

    import meltbench
    from meltbench.environment import physical_cores
    from meltbench.errors import UsageError
    from meltbench.models.resolve import resolve_model
    from meltbench.results.tables import format_bytes

    threads = args.threads or physical_cores()
    gguf = str(resolve_model("gemma3-270m-q4_k_m").path)
    common = dict(
        n_prompt=args.n_prompt, n_gen=args.n_gen, reps=args.reps, warmup=1, threads=threads
    )
    rows = []
    notes: list[str] = []
    reference: list[int] | None = None
    for engine, extra in ARMS:
        if args.engines and engine not in wanted:
            continue
        if engine == "executorch" and args.executorch_model:
            extra = {"model": args.executorch_model}
        label = engine + (f" {extra['dtype']}" if "dtype" in extra else "")
        if engine == "executorch":
            label = "executorch 8da4w"
        print(f"running {label} ...", file=sys.stderr)
        try:
            if engine == "openai":
                with llama_server(gguf, threads) as url:
                    result = meltbench.run(engine=engine, endpoint=url, model="gemma", **common)
            else:
                result = meltbench.run(engine=engine, **extra, **common)
        except (UsageError, RuntimeError) as exc:
            rows.append((label, f"not run: {exc}"))
            continue
        if not result.ok:
            rows.append((label, f"failed: {result.failure}"))
            continue
        notes.append(own_figures(engine, result, args.n_gen, threads))
        tokens = result.repetitions[-1].tokens
        if engine == "llama.cpp":
            reference = tokens
        agree = "n/a" if engine == "openai" or reference is None else agreement(reference, tokens)
        m = result.metrics
        stored = result.model.get("quant") or ""
        run_as = extra.get("dtype")
        quant = f"{stored} as {run_as}" if run_as and run_as != stored else stored
        rows.append(
            (
                label,
                quant,
                f"{m['load_ms'].median:.0f}",
                f"{m['ttft_ms'].median:.1f}",
                f"{m['prefill_tps'].median:.1f}",
                f"{m['decode_tps'].median:.2f}",
                f"{m['itl_ms'].median:.2f}",
                f"{m['itl_ms'].p99:.2f}",
                format_bytes(result.memory.get("peak_rss_bytes")),
                agree,
            )
        )

    header = (
        "engine",
        "weights (run as)",
        "load ms",
        "TTFT ms",
        "prefill t/s",
        "decode t/s",
        "ITL p50",
        "ITL p99",
        "peak RSS",
        "greedy = llama.cpp",
    )
    print(
        f"Gemma 3 270M, pp{args.n_prompt}+tg{args.n_gen}, {args.reps} reps, "
        f"{threads} threads, medians"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        if len(row) == 2:
            print(f"| {row[0]} | {row[1]} |" + " |" * (len(header) - 2))
        else:
            print("| " + " | ".join(row) + " |")
    for note in notes:
        if note:
            print(f"\n{note}")


if __name__ == "__main__":
    main()
