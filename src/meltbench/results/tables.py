"""Result rows in llama-bench's layout, shared by the terminal, Markdown and CSV outputs.

A run of ``pp512+tg128`` gives two rows, as llama-bench shows them: ``pp512`` with the
prefill rate and TTFT, and ``tg128`` with the decode rate and inter-token latency.
A forward run (``--task encode``/``classify``) gives one row in its own columns
(:data:`FORWARD_COLUMNS`): latency per pass, items/s, the cold pass and the output check.
Note that our ``tg`` is decoded right after the prompt (the KV cache holds n_depth +
n_prompt tokens), where llama-bench's plain ``tg128`` starts from an empty cache.
"""

from __future__ import annotations

from typing import Any

from meltbench.measure.stats import Summary
from meltbench.results.schema import RunResult

__all__ = [
    "BENCH_COLUMNS",
    "FORWARD_COLUMNS",
    "FORWARD_SENSOR_COLUMNS",
    "NUMERIC_COLUMNS",
    "ROOFLINE_COLUMNS",
    "SENSOR_COLUMNS",
    "bench_columns",
    "bench_rows",
    "flat_record",
    "format_bytes",
    "format_params",
    "format_rate",
]

BENCH_COLUMNS = (
    "model",
    "size",
    "params",
    "engine",
    "threads",
    "test",
    "t/s",
    "TTFT ms",
    "ITL p50 ms",
    "ITL p99 ms",
    "peak RSS",
)
#: extra columns shown when a run measured energy or temperature: joules per token of the
#: row's window (prefill for pp, decode for tg), the same net of idle, the hottest sensor
SENSOR_COLUMNS = ("J/tok", "J/tok net", "max °C")
#: extra columns shown when a run knows its KV cache size or decode roofline: the KV
#: cache allocated, and decode tok/s as a share of the memory-bandwidth bound (tg rows)
ROOFLINE_COLUMNS = ("KV cache", "decode eff")
#: the row of a forward run: median and p99 latency per pass, items (sequences or images)
#: per second as mean ± stddev, the first (cold) pass, the largest difference of the
#: outputs from PyTorch eager's (``FAIL`` appended when beyond tolerance), peak RSS
FORWARD_COLUMNS = (
    "model",
    "params",
    "engine",
    "threads",
    "test",
    "items/s",
    "p50 ms",
    "p99 ms",
    "cold ms",
    "max |Δ|",
    "peak RSS",
)
#: extra columns of forward runs with sensors: joules per item, net of idle, hottest °C
FORWARD_SENSOR_COLUMNS = ("J/item", "J/item net", "max °C")
#: columns of every table that hold numbers (right-aligned by every renderer)
NUMERIC_COLUMNS = (
    frozenset(
        ("size", "params", "threads", "t/s", "TTFT ms", "ITL p50 ms", "ITL p99 ms", "peak RSS")
    )
    | frozenset(("items/s", "p50 ms", "p99 ms", "cold ms", "max |Δ|"))
    | frozenset(SENSOR_COLUMNS)
    | frozenset(FORWARD_SENSOR_COLUMNS)
    | frozenset(ROOFLINE_COLUMNS)
)
_STATS = ("n", "mean", "median", "stddev", "min", "max", "p90", "p99", "ci95_low", "ci95_high")


def format_bytes(n: float | None) -> str:
    """Binary units as llama-bench prints sizes: ``238.88 MiB``, ``1.50 GiB``."""
    if n is None:
        return ""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def format_params(n: float | None) -> str:
    """Parameter count as llama-bench prints it: ``268.10 M``, ``7.24 B``."""
    if n is None:
        return ""
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.2f} K"


def format_rate(summary: Summary | None) -> str:
    """``mean ± stddev`` with two decimals, llama-bench's t/s style."""
    if summary is None:
        return ""
    if summary.stddev is None:
        return f"{summary.mean:.2f}"
    return f"{summary.mean:.2f} ± {summary.stddev:.2f}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _threads(result: RunResult) -> str:
    """Threads the engine used: its own report when it has one (None = it has no thread
    setting, shown as "-"), else what meltbench asked for."""
    if "n_threads" in result.engine:
        used = result.engine["n_threads"]
        return "-" if used is None else str(used)
    return str(result.settings.get("threads", ""))


def bench_columns(results: list[RunResult] | tuple[RunResult, ...]) -> tuple[str, ...]:
    """:data:`BENCH_COLUMNS`, plus :data:`SENSOR_COLUMNS` when any run measured energy
    or temperature (so machines without sensors get llama-bench's familiar table), plus
    :data:`ROOFLINE_COLUMNS` when any run knows its KV cache size or decode efficiency; a
    ``target`` column after ``engine`` when the runs come from more than one target.

    Forward runs only: :data:`FORWARD_COLUMNS` (+ :data:`FORWARD_SENSOR_COLUMNS` with
    sensors); generation and forward runs together: the generation columns, then the
    forward ones they lack."""
    forward = [r for r in results if r.forward is not None]
    generation = [r for r in results if r.forward is None]
    columns = BENCH_COLUMNS if generation else FORWARD_COLUMNS
    if generation and forward:
        columns += FORWARD_COLUMNS
    if len({r.target for r in results}) > 1:  # a lab or multi-target sweep: say where
        i = columns.index("engine") + 1
        columns = (*columns[:i], "target", *columns[i:])
    names = ("j_per_token_prefill", "j_per_token_decode", "temp_max_c")
    if any(n in r.metrics for r in generation for n in names):
        columns += SENSOR_COLUMNS
    if any(n in r.metrics for r in forward for n in ("j_per_item", "temp_max_c")):
        columns += FORWARD_SENSOR_COLUMNS
    roof = ("kv_cache_bytes", "decode_efficiency")
    if any(n in r.metrics for r in generation for n in roof):
        columns += ROOFLINE_COLUMNS
    return tuple(dict.fromkeys(columns))


def _jpt(summary: Summary | None) -> str:
    return "" if summary is None else f"{summary.median:.3g}"


def _common(result: RunResult) -> dict[str, str]:
    model = result.model
    m = result.metrics
    return {
        "model": " ".join(str(x) for x in (model.get("name"), model.get("quant")) if x),
        "size": format_bytes(model.get("size_bytes")),
        "params": format_params(model.get("n_params") or result.engine.get("n_params")),
        "engine": str(result.engine.get("name", result.spec.engine.name)),
        "target": result.target,
        "threads": _threads(result),
        "peak RSS": format_bytes(result.memory.get("peak_rss_bytes"))
        + (" (client)" if result.engine.get("device") == "remote" else ""),
        "max °C": _ms(m["temp_max_c"].max if "temp_max_c" in m else None),
    }


def _all_columns(row: dict[str, str]) -> dict[str, str]:
    columns = (*BENCH_COLUMNS, *FORWARD_COLUMNS, "target", *SENSOR_COLUMNS,
               *FORWARD_SENSOR_COLUMNS, *ROOFLINE_COLUMNS)  # fmt: skip
    return {col: row.get(col, "") for col in dict.fromkeys(columns)}


def forward_row(result: RunResult) -> dict[str, str]:
    """The one row of a forward run, keyed by :data:`FORWARD_COLUMNS` and
    :data:`FORWARD_SENSOR_COLUMNS` (empty strings where not measured); ``test`` is the
    workload label (``encode-b8-s128``, ``classify-b1-r224``)."""
    m = result.metrics
    lat = m.get("latency_ms")
    check = (result.forward or {}).get("output_check") or {}
    diff = check.get("max_abs_diff")
    delta = "" if diff is None else f"{diff:.2g}" + ("" if check.get("match") else " FAIL")
    row = {
        **_common(result),
        "test": result.spec.workload.label,
        "items/s": format_rate(m.get("throughput_items_per_s")),
        "p50 ms": _ms(lat.median if lat else None),
        "p99 ms": _ms(lat.p99 if lat else None),
        "cold ms": _ms(result.cold.get("latency_ms")),
        "max |Δ|": delta,
        "J/item": _jpt(m.get("j_per_item")),
        "J/item net": _jpt(m.get("j_per_item_net")),
    }
    if not result.ok:
        row["items/s"] = (row["items/s"] + " " if row["items/s"] else "") + "FAILED"
    return _all_columns(row)


def bench_rows(result: RunResult) -> list[dict[str, str]]:
    """The pp and tg rows of one run, keyed by :data:`BENCH_COLUMNS` and
    :data:`SENSOR_COLUMNS` (empty strings where not measured); a forward run's one row
    (:func:`forward_row`)."""
    if result.forward is not None:
        return [forward_row(result)]
    w = result.spec.workload
    m = result.metrics
    depth = f" @ d{w.n_depth}" if w.n_depth else ""
    common = {
        **_common(result),
        "KV cache": format_bytes(m["kv_cache_bytes"].median if "kv_cache_bytes" in m else None),
    }
    itl = m.get("itl_ms")
    ttft = m.get("ttft_ms")
    pp = {
        **common,
        "test": f"pp{w.n_prompt}{depth}",
        "t/s": format_rate(m.get("prefill_tps")),
        "TTFT ms": _ms(ttft.median if ttft else None),
        "ITL p50 ms": "",
        "ITL p99 ms": "",
        "J/tok": _jpt(m.get("j_per_token_prefill")),
        "J/tok net": _jpt(m.get("j_per_token_prefill_net")),
    }
    tg = {
        **common,
        "test": f"tg{w.n_gen}{depth}",
        "t/s": format_rate(m.get("decode_tps")),
        "TTFT ms": "",
        "ITL p50 ms": _ms(itl.median if itl else None),
        "ITL p99 ms": _ms(itl.p99 if itl else None),
        "J/tok": _jpt(m.get("j_per_token_decode")),
        "J/tok net": _jpt(m.get("j_per_token_decode_net")),
        "decode eff": f"{eff.median:.1%}" if (eff := m.get("decode_efficiency")) else "",
    }
    if result.requests is not None:  # a request workload: its kind, not pp/tg sizes
        kind = w.kind + (f"@{w.doc_tokens}" if w.kind == "document" else "")
        kind += f"@c{w.concurrency}" if w.concurrency > 1 else ""
        pp["test"], tg["test"] = f"{kind} prefill", f"{kind} decode"
    rows = [pp, tg]
    if not result.ok:
        for row in rows:
            row["t/s"] = (row["t/s"] + " " if row["t/s"] else "") + "FAILED"
    return [_all_columns(row) for row in rows]


def flat_record(result: RunResult) -> dict[str, Any]:
    """One flat dict per run (CSV, pandas): identity, settings, then every metric's
    statistics as ``{metric}_{stat}`` and the fidelity ratios."""
    w = result.spec.workload
    model = result.model
    record: dict[str, Any] = {
        "run_id": result.run_id,
        "status": result.status,
        "failure": result.failure,
        "started_at": result.started_at,
        "test": result.test,
        "model_name": model.get("name"),
        "model_path": model.get("path"),
        "quant": model.get("quant"),
        "size_bytes": model.get("size_bytes"),
        "n_params": model.get("n_params") or result.engine.get("n_params"),
        "engine": result.engine.get("name", result.spec.engine.name),
        "engine_version": result.engine.get("version"),
        "dtype": result.spec.engine.dtype,
        "device": result.engine.get("device"),
        "target": result.target,
        "threads": result.settings.get("threads"),
        "n_ctx": result.settings.get("n_ctx"),
        "n_prompt": w.n_prompt,
        "n_gen": w.n_gen,
        "n_depth": w.n_depth,
        "reps": w.reps,
        "warmup": w.warmup,
        "seed": w.seed,
        "timing": w.timing,
        "flash_attn_used": (result.engine.get("params") or {}).get("flash_attn_used"),
        "cpu_model": result.environment.get("cpu_model"),
    }
    for name in sorted(result.metrics):
        summary = result.metrics[name]
        for stat in _STATS:
            record[f"{name}_{stat}"] = getattr(summary, stat)
    for name, ratio in sorted(result.fidelity.items()):
        record[f"{name}_vs_engine"] = ratio
    for name, value in sorted(result.cold.items()):
        record[f"cold_{name}"] = value
    return record
