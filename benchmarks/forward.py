"""Forward tasks: meltbench's latency per pass against each runtime's own plain loop, and
the engines side by side (an encoder and MobileNetV4).

For every case (model x shape) and engine, two arms, each a fresh process, interleaved
over ``--rounds`` rounds (the order alternating), the same cached weights and inputs:

- ``meltbench``: ``meltbench run --task ... --engine E -f json`` (the worker, its sensors
  and memory sampler on), the median of its ``latency_ms`` samples;
- ``bare``: the loop a user writes with the library alone, at the library's own defaults
  (the reference the reader compares with): ``transformers.AutoModel.from_pretrained`` /
  ``timm.create_model`` + ``torch.inference_mode()`` for PyTorch, ``torch.compile(model)``
  for TorchInductor, ``onnxruntime.InferenceSession(path)`` with default session options
  for ONNX Runtime, mlx-embeddings' ``load_model`` + ``mx.eval`` for MLX,
  ``executorch.runtime.Runtime.load_program(...).load_method("forward")`` for ExecuTorch,
  ``ai_edge_litert.interpreter.Interpreter(model_path)`` and its signature runner for
  LiteRT (each runtime's own thread default); ``--warmup``
  untimed passes then ``--reps`` passes timed with ``time.perf_counter_ns``, inputs
  converted from NumPy and outputs back to NumPy inside the timing, as meltbench does.

It prints, per case, each engine's meltbench and bare medians (ms), their ratio per round
and its median, and meltbench's output check (max |Δ| against PyTorch eager). A ratio near
1.00 means the harness adds nothing; the engines' columns compare the runtimes.

Usage: ``python benchmarks/forward.py [--rounds 3 --reps 20 --warmup 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

CASES: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"task": "encode", "model": "bert-base", "batch_size": 1, "seq_len": 128},
     ("torch", "torch.compile", "onnxruntime", "executorch", "litert", "mlx")),
    ({"task": "encode", "model": "bert-base", "batch_size": 8, "seq_len": 128},
     ("torch", "onnxruntime", "executorch", "litert")),
    ({"task": "classify", "model": "mobilenetv4_conv_small", "batch_size": 1},
     ("torch", "torch.compile", "onnxruntime", "executorch", "litert")),
    ({"task": "classify", "model": "mobilenetv4_hybrid_medium", "batch_size": 1},
     ("torch", "onnxruntime", "executorch", "litert")),
]  # fmt: skip
"""(run settings, engines): the BERT-base shape at one and eight sequences of 128 tokens,
MobileNetV4 conv-small (224 x 224) and hybrid-medium (256 x 256) on one image."""

SLOW: dict[str, tuple[int, int]] = {"mlx": (5, 1)}
"""Engines run with fewer (reps, warmup) than asked: MLX's Linux CPU backend takes seconds
per BERT-base pass (a reference BLAS)."""


def cli_args(case: dict[str, Any]) -> list[str]:
    """``meltbench run`` flags of a case."""
    return [a for k, v in case.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def manifest_of(case: dict[str, Any], engine: str) -> dict[str, Any]:
    """The cached build of a case (its weights, inputs and the engine's export), built by
    meltbench's own first run; the bare arm loads the same files."""
    from meltbench.api import build_spec, prepare
    from meltbench.forward.build import ensure_artifacts

    return ensure_artifacts(prepare(build_spec(engine=engine, **case)).forward)


def meltbench_arm(case: dict[str, Any], engine: str, reps: int, warmup: int) -> dict[str, Any]:
    """One ``meltbench run`` in a fresh process: the median pass (ms), the output check."""
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", "run", *cli_args(case), "--engine", engine,
         "--reps", str(reps), "--warmup", str(warmup), "--no-db", "-f", "json"],
        capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"meltbench run failed: {proc.stderr.strip()[-500:]}")
    data = json.loads(proc.stdout)
    if data["status"] != "ok":
        raise RuntimeError(f"meltbench run failed: {data['failure']}")
    return {"median_ms": data["metrics"]["latency_ms"]["median"],
            "max_abs_diff": data["forward"]["output_check"]["max_abs_diff"]}  # fmt: skip


def bare_arm(case: dict[str, Any], engine: str, reps: int, warmup: int) -> float:
    """:func:`bare_loop` in a fresh process; its median pass, ms."""
    request = json.dumps({"case": case, "engine": engine, "reps": reps, "warmup": warmup})
    proc = subprocess.run([sys.executable, __file__, "--bare", request], capture_output=True,
                          text=True, check=False, timeout=1800)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"bare loop failed: {proc.stderr.strip()[-500:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def bare_loop(engine: str, task: str, manifest: dict[str, Any], reps: int, warmup: int) -> float:
    """The library's own loop in this process; the median pass, ms."""
    import numpy as np

    inputs = dict(np.load(manifest["inputs"]))
    if engine in ("torch", "torch.compile"):
        import torch

        if task == "encode":
            from transformers import AutoModel

            model = AutoModel.from_pretrained(manifest["model_dir"]).eval()
        else:
            import timm
            from safetensors.torch import load_file

            meta = json.loads(open(f"{manifest['model_dir']}/meta.json").read())
            model = timm.create_model(meta["timm_name"], pretrained=False).eval()
            model.load_state_dict(load_file(f"{manifest['model_dir']}/model.safetensors"))
        if engine == "torch.compile":
            model = torch.compile(model)

        def one() -> Any:
            with torch.inference_mode():
                if task == "encode":
                    out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
                    return out.last_hidden_state.numpy(), out.pooler_output.numpy()
                return model(torch.from_numpy(inputs["pixel_values"])).numpy()
    elif engine == "onnxruntime":
        import onnxruntime as ort

        session = ort.InferenceSession(
            manifest["exports"]["onnx"], providers=["CPUExecutionProvider"]
        )

        def one() -> Any:
            return session.run(None, inputs)
    elif engine == "mlx":
        from pathlib import Path

        import mlx.core as mx
        from mlx_embeddings.utils import load_model

        model = load_model(Path(manifest["model_dir"]))

        def one() -> Any:
            out = model(mx.array(inputs["input_ids"]),
                        attention_mask=mx.array(inputs["attention_mask"]))  # fmt: skip
            mx.eval(out.last_hidden_state, out.pooler_output)
            return np.array(out.last_hidden_state), np.array(out.pooler_output)
    elif engine == "executorch":
        import torch
        from executorch.runtime import Runtime

        method = (
            Runtime.get().load_program(manifest["exports"]["executorch"]).load_method("forward")
        )  # ExecuTorch's defaults: its XNNPACK thread pool as the library sizes it

        def one() -> Any:
            outs = method.execute([torch.from_numpy(a) for a in inputs.values()])
            return [o.numpy() for o in outs]
    elif engine == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=manifest["exports"]["litert"])  # its defaults
        runner = interpreter.get_signature_runner()
        details = runner.get_input_details()

        def one() -> Any:
            feed = {n: a.astype(details[n]["dtype"], copy=False)
                    for n, a in zip(details, inputs.values(), strict=True)}  # fmt: skip
            return runner(**feed)
    else:
        raise ValueError(engine)
    for _ in range(warmup):
        one()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        one()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cases", default="", help="comma list of case numbers (default all)")
    parser.add_argument("--engines", default="", help="comma list: only these engines")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:  # the child of bare_arm
        req = json.loads(args.bare)
        case = req["case"]
        manifest = manifest_of(case, req["engine"])
        print(bare_loop(req["engine"], case["task"], manifest, req["reps"], req["warmup"]))
        return
    chosen = [int(c) for c in args.cases.split(",") if c] or range(len(CASES))
    for index in chosen:
        case, engines = CASES[index]
        label = " ".join(f"{v}" for v in case.values())
        print(
            f"\n## {label} ({args.rounds} rounds x {args.reps} passes after {args.warmup}; "
            f"mlx {SLOW['mlx'][0]} after {SLOW['mlx'][1]})"
        )
        rows = {}
        wanted = [e for e in args.engines.split(",") if e]
        for engine in engines:
            if wanted and engine not in wanted:
                continue
            from meltbench.registry import FORWARD_ENGINES

            missing = FORWARD_ENGINES.load(engine).missing_requirements()
            if missing:
                print(f"({engine}: skipped, {', '.join(missing)} not installed)")
                continue
            reps, warmup = SLOW.get(engine, (args.reps, args.warmup))
            mine, bare, ratios, diff = [], [], [], None
            for r in range(args.rounds):  # interleaved, the order alternating per round
                arms = ["meltbench", "bare"] if r % 2 == 0 else ["bare", "meltbench"]
                got: dict[str, float] = {}
                for arm in arms:
                    if arm == "meltbench":
                        out = meltbench_arm(case, engine, reps, warmup)
                        got[arm], diff = out["median_ms"], out["max_abs_diff"]
                    else:
                        got[arm] = bare_arm(case, engine, reps, warmup)
                mine.append(got["meltbench"])
                bare.append(got["bare"])
                ratios.append(got["meltbench"] / got["bare"])
            rows[engine] = (statistics.median(mine), statistics.median(bare), ratios, diff)
        print(
            "| engine | meltbench ms (median) | bare ms (median) | meltbench / bare per "
            "round | median | max abs diff vs torch |"
        )
        print("| --- | ---: | ---: | --- | ---: | ---: |")
        for engine, (m, b, ratios, diff) in rows.items():
            per = ", ".join(f"{x:.3f}" for x in ratios)
            print(
                f"| {engine} | {m:.2f} | {b:.2f} | {per} | {statistics.median(ratios):.3f} "
                f"| {diff:.2g} |"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
