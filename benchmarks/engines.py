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
]


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
    args = parser.parse_args()

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
    reference: list[int] | None = None
    for engine, extra in ARMS:
        label = engine + (f" {extra['dtype']}" if "dtype" in extra else "")
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


if __name__ == "__main__":
    main()
