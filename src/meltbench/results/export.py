"""Exporters: results to JSON, JSON Lines, CSV or Markdown text, behind one function.

- ``json``: the full results (raw repetitions included); one object for one run, an
  array for several.
- ``jsonl``: one compact JSON object per run per line.
- ``csv``: one row per run, flat columns (:func:`meltbench.results.tables.flat_record`);
  runs with different metric sets share the union of columns.
- ``md``: llama-bench's Markdown table, two rows (pp, tg) per run.
- ``llama-bench``: JSON Lines with llama-bench's own field names (``-o jsonl`` of
  llama.cpp's llama-bench), one line per test (pp, then tg), so tools that read
  llama-bench output read ours. Mapping: ``model_filename`` = model path, ``model_type``
  = llama.cpp's model description (else architecture + quant), ``model_size`` /
  ``model_n_params`` = the engine's numbers (else the file's), ``n_batch``, ``n_ubatch``,
  ``n_threads`` = settings, ``n_prompt``/``n_gen`` = the test's (the other 0),
  ``n_depth``, ``test_time`` = run start, ``samples_ts`` = our per-repetition prefill_tps
  (pp) or decode_tps (tg), ``samples_ns`` = the matching times (prefill time; decode
  window = time from first to last token), ``avg_*``/``stddev_*`` = their mean and sample
  stddev. Difference: our tg times n_gen - 1 intervals after the prompt (see README).
- ``parquet``: the CSV's columns as an Apache Parquet file (binary; pandas + pyarrow), via
  :func:`write_parquet`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from meltbench.errors import UsageError
from meltbench.results.schema import RunResult
from meltbench.results.tables import NUMERIC_COLUMNS, bench_columns, bench_rows, flat_record

__all__ = ["EXPORT_FORMATS", "export", "write_parquet"]

EXPORT_FORMATS = ("json", "jsonl", "csv", "md", "llama-bench")


def _json(results: Sequence[RunResult]) -> str:
    data = [r.to_json_dict() for r in results]
    return json.dumps(data[0] if len(data) == 1 else data, indent=2) + "\n"


def _jsonl(results: Sequence[RunResult]) -> str:
    return "".join(json.dumps(r.to_json_dict(), separators=(",", ":")) + "\n" for r in results)


def _csv(results: Sequence[RunResult]) -> str:
    records = [flat_record(r) for r in results]
    columns: list[str] = []
    for record in records:
        columns += [c for c in record if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md(results: Sequence[RunResult]) -> str:
    columns = bench_columns(list(results))
    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---:" if c in NUMERIC_COLUMNS else "---" for c in columns) + " |",
    ]
    for result in results:
        for row in bench_rows(result):
            lines.append("| " + " | ".join(_md_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    from meltbench.measure.stats import summarize

    s = summarize(values)
    return s.mean, s.stddev or 0.0


def _llama_bench_lines(result: RunResult) -> list[dict[str, object]]:
    w, eng, model, settings = result.spec.workload, result.engine, result.model, result.settings
    opts = settings.get("options") or {}
    features = eng.get("features") or {}
    common: dict[str, object] = {
        "build_commit": eng.get("version"),
        "cpu_info": result.environment.get("cpu_model"),
        "gpu_info": "",
        "backends": ",".join(features) or eng.get("name"),
        "model_filename": model.get("path"),
        "model_type": eng.get("model_desc") or f"{model.get('architecture')} {model.get('quant')}",
        "model_size": eng.get("model_size_bytes") or model.get("size_bytes"),
        "model_n_params": eng.get("model_n_params") or model.get("n_params"),
        "n_batch": settings.get("batch"),
        "n_ubatch": settings.get("ubatch"),
        "n_threads": settings.get("threads"),
        "type_k": opts.get("type_k", "f16"),
        "type_v": opts.get("type_v", "f16"),
        "n_gpu_layers": opts.get("n_gpu_layers", 0),
        "flash_attn": bool(opts.get("flash_attn", False)),
        "use_mmap": bool(opts.get("use_mmap", True)),
        "n_depth": w.n_depth,
        "test_time": result.started_at,
    }
    lines = []
    for metric, n_prompt, n_gen, tokens in (
        ("prefill_tps", w.n_prompt, 0, w.n_prompt),
        ("decode_tps", 0, w.n_gen, w.n_gen - 1),
    ):
        summary = result.metrics.get(metric)
        if summary is None or tokens < 1:
            continue
        ts = list(summary.samples)
        ns = [tokens / t * 1e9 for t in ts]
        avg_ns, sd_ns = _mean_sd(ns)
        avg_ts, sd_ts = _mean_sd(ts)
        lines.append({**common, "n_prompt": n_prompt, "n_gen": n_gen, "avg_ns": round(avg_ns),
                      "stddev_ns": round(sd_ns), "avg_ts": avg_ts, "stddev_ts": sd_ts,
                      "samples_ns": [round(v) for v in ns], "samples_ts": ts})  # fmt: skip
    return lines


def _llama_bench(results: Sequence[RunResult]) -> str:
    return "".join(
        json.dumps(line, separators=(",", ":")) + "\n"
        for r in results
        for line in _llama_bench_lines(r)
    )


_EXPORTERS = {
    "json": _json,
    "jsonl": _jsonl,
    "csv": _csv,
    "md": _md,
    "llama-bench": _llama_bench,
}


def export(results: Sequence[RunResult], fmt: str) -> str:
    """Render results in format ``fmt`` (one of :data:`EXPORT_FORMATS`).

    Raises:
        UsageError: unknown format.
    """
    try:
        exporter = _EXPORTERS[fmt]
    except KeyError:
        raise UsageError(
            f"unknown format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}"
        ) from None
    return exporter(list(results))


def write_parquet(results: Sequence[RunResult], path: str) -> None:
    """Write one row per run (the CSV columns) as Parquet.

    Raises:
        UsageError: pandas or pyarrow is missing (``pip install 'meltbench[report]'``).
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise UsageError(
            "parquet export needs pandas and pyarrow: pip install 'meltbench[report]'"
        ) from exc
    try:
        pd.DataFrame([flat_record(r) for r in results]).to_parquet(path, index=False)
    except ImportError as exc:
        raise UsageError("parquet export needs pyarrow: pip install 'meltbench[report]'") from exc
