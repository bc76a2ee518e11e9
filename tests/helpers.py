"""Test helpers: small GGUF files written by the tests, hand-built results."""

from __future__ import annotations

import uuid
from pathlib import Path

#: Metrics every engine's run must produce (positive numbers).
RUN_METRICS = (
    "ttft_ms",
    "prefill_tps",
    "decode_tps",
    "itl_ms",
    "tpot_ms",
    "e2e_ms",
    "load_ms",
    "peak_rss_bytes",
)


def write_tiny_gguf(path: Path, file_type: int | None = 7, name: str = "tiny test model") -> Path:
    """A 2-tensor GGUF (48 float32 parameters) with llama metadata; file_type 7 = Q8_0."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_context_length(128)
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    writer.add_tensor("output_norm.weight", np.ones(16, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def make_result(status: str = "ok", n_reps: int = 3, **overrides):
    """A complete RunResult built by hand (no engine), with exact numbers."""
    from meltbench.config import RunSpec
    from meltbench.measure.analysis import analyze_reps
    from meltbench.results.schema import Repetition, RunResult

    spec = RunSpec.model_validate({"workload": {"n_prompt": 8, "n_gen": 4, "reps": n_reps}})
    reps = []
    for i in range(n_reps + 1):
        start = (i + 1) * 1_000_000_000
        reps.append(
            {
                "index": i,
                "kind": "warmup" if i == 0 else "timed",
                "t_start_ns": start,
                "token_ns": [start + 20_000_000 + k * 10_000_000 for k in range(4)],
                "tokens": [1, 2, 3, 4],
                "counters": {"n_p_eval": 8, "t_p_eval_ms": 19.9, "n_eval": 3, "t_eval_ms": 29.9},
                "depth_fill_ns": None,
            }
        )
    analysis = analyze_reps(reps, 8, load_ns=123_000_000, peak_rss_bytes=300 * 2**20)
    fields = dict(
        run_id=uuid.uuid4().hex,
        status=status,
        failure=None if status == "ok" else "worker crashed with SIGSEGV",
        started_at="2026-11-21T10:00:00.000+00:00",
        finished_at="2026-11-21T10:00:05.000+00:00",
        test=spec.workload.label,
        spec=spec,
        settings={"threads": 2, "n_ctx": 12, "batch": 512, "ubatch": 512, "seed": 0, "options": {}},
        model={"name": "tiny", "quant": "Q8_0", "size_bytes": 253113024, "n_params": 268098176},
        engine={"name": "llama.cpp", "version": "0.3.36"},
        environment={"cpu_model": "Test CPU"},
        metrics=analysis.metrics,
        cold=analysis.cold,
        fidelity=analysis.fidelity,
        memory={"peak_rss_bytes": 300 * 2**20},
        warnings=[w.to_dict() for w in analysis.warnings],
        repetitions=[Repetition.model_validate(r) for r in reps],
    )
    fields.update(overrides)
    return RunResult(**fields)


def make_forward_result(batch: int, pass_ms: list[float], engine: str = "torch",
                        max_abs_diff: float = 0.0, match: bool = True, **overrides):  # fmt: skip
    """A forward run (``--task encode``, bert-tiny, seq_len 16) built by hand: a warmup
    pass of 2 x ``pass_ms[0]`` then one timed pass per ``pass_ms`` entry (ms, exact), its
    metrics from :func:`meltbench.forward.analysis.pass_metrics`."""
    from meltbench.config import RunSpec
    from meltbench.forward.analysis import pass_metrics
    from meltbench.measure.stats import summarize
    from meltbench.results.schema import Repetition

    spec = RunSpec.model_validate(
        {"model": {"ref": "bert-tiny", "weights": "random"}, "engine": {"name": engine},
         "workload": {"task": "encode", "batch_size": batch, "seq_len": 16,
                      "reps": len(pass_ms)}}
    )  # fmt: skip
    reps, t = [], 1_000_000_000
    for i, ms in enumerate([2 * pass_ms[0], *pass_ms]):
        end = t + round(ms * 1e6)
        reps.append({"index": i, "kind": "warmup" if i == 0 else "timed", "t_start_ns": t,
                     "t_end_ns": end, "token_ns": [], "tokens": []})  # fmt: skip
        t = end + 1000
    samples, cold = pass_metrics(reps, batch)
    check = {"max_abs_diff": max_abs_diff, "tolerance_ratio": max_abs_diff / 1e-4,
             "atol": 1e-4, "rtol": 1e-3, "match": match,
             "reason": None if match else "output 'last_hidden_state' differs",
             "per_output": {}}  # fmt: skip
    fields = dict(
        spec=spec,
        test=spec.workload.label,
        settings={"threads": 2, "seed": 0, "options": {}},
        model={"name": "bert-tiny", "n_params": 4_385_920},
        engine={"name": engine, "version": "2.14.1", "threads": 2},
        metrics={k: summarize(v) for k, v in samples.items()},
        cold=cold,
        fidelity={},
        warnings=[],
        repetitions=[Repetition.model_validate(r) for r in reps],
        forward={"task": "encode", "items_per_pass": batch, "output_check": check},
    )
    fields.update(overrides)
    return make_result(**fields)


def wikitext_test_path() -> Path:
    """The WikiText-2 test split (SPEC.md: ``../shared/data/wikitext-2/test.txt``).

    Looked up in order: ``$MELTBENCH_WIKITEXT``, ``shared/data`` beside the checkout,
    ``/work/shared/data`` (where this project's machines keep it, wherever the checkout
    is). Returns the first that exists, else the first candidate (tests then fail with
    the path in the message; never skip).
    """
    import os

    rel = Path("shared") / "data" / "wikitext-2" / "test.txt"
    candidates = [
        Path(os.environ["MELTBENCH_WIKITEXT"]) if os.environ.get("MELTBENCH_WIKITEXT") else None,
        Path(__file__).resolve().parents[2] / rel,
        Path("/work") / rel,
    ]
    found = [p for p in candidates if p is not None]
    return next((p for p in found if p.is_file()), found[0])
