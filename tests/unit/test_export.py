import csv
import io
import json

import pytest

from meltbench.errors import UsageError
from meltbench.results.export import export
from meltbench.results.schema import RunResult
from meltbench.results.tables import bench_rows, format_bytes, format_params
from tests.helpers import make_result


def test_json_round_trip_one_and_many():
    r = make_result()
    assert RunResult.model_validate(json.loads(export([r], "json"))) == r
    many = json.loads(export([r, make_result()], "json"))
    assert isinstance(many, list) and len(many) == 2


def test_jsonl_one_line_per_run():
    lines = export([make_result(), make_result()], "jsonl").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["schema_version"] == 1


def test_csv_flat_columns():
    r = make_result()
    rows = list(csv.DictReader(io.StringIO(export([r], "csv"))))
    assert len(rows) == 1
    row = rows[0]
    assert row["run_id"] == r.run_id
    assert float(row["decode_tps_median"]) == pytest.approx(100.0)
    assert float(row["prefill_tps_mean"]) == pytest.approx(400.0)  # 8 tokens / 20 ms
    assert float(row["ttft_ms_p99"]) == pytest.approx(20.0)
    assert row["quant"] == "Q8_0"
    assert "decode_tps_vs_engine" in row


def test_markdown_llama_bench_rows():
    text = export([make_result()], "md")
    lines = text.splitlines()
    assert lines[0].startswith("| model | size | params | engine | threads | test | t/s |")
    assert len(lines) == 4  # header, rule, pp row, tg row
    assert "| pp8 |" in lines[2] and "| tg4 |" in lines[3]
    assert "241.39 MiB" in lines[2] and "268.10 M" in lines[2]


def test_failed_run_rows_say_failed():
    rows = bench_rows(make_result(status="failed"))
    assert all(r["t/s"].endswith("FAILED") for r in rows)


def test_formatting_helpers():
    assert format_bytes(253113024) == "241.39 MiB"
    assert format_bytes(3 * 2**30) == "3.00 GiB"
    assert format_bytes(None) == ""
    assert format_params(268098176) == "268.10 M"
    assert format_params(7.24e9) == "7.24 B"


def test_unknown_format():
    with pytest.raises(UsageError, match="unknown format"):
        export([make_result()], "xml")
