"""Exporters: results to JSON, JSON Lines, CSV or Markdown text, behind one function.

- ``json``: the full results (raw repetitions included); one object for one run, an
  array for several.
- ``jsonl``: one compact JSON object per run per line.
- ``csv``: one row per run, flat columns (:func:`meltbench.results.tables.flat_record`);
  runs with different metric sets share the union of columns.
- ``md``: llama-bench's Markdown table, two rows (pp, tg) per run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from meltbench.errors import UsageError
from meltbench.results.schema import RunResult
from meltbench.results.tables import BENCH_COLUMNS, bench_rows, flat_record

__all__ = ["EXPORT_FORMATS", "export"]

EXPORT_FORMATS = ("json", "jsonl", "csv", "md")


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
    right = {"size", "params", "threads", "t/s", "TTFT ms", "ITL p50 ms", "ITL p99 ms", "peak RSS"}
    lines = [
        "| " + " | ".join(BENCH_COLUMNS) + " |",
        "| " + " | ".join("---:" if c in right else "---" for c in BENCH_COLUMNS) + " |",
    ]
    for result in results:
        for row in bench_rows(result):
            lines.append("| " + " | ".join(_md_cell(row[c]) for c in BENCH_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


_EXPORTERS = {"json": _json, "jsonl": _jsonl, "csv": _csv, "md": _md}


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
