import csv
import io
import json

import pytest

from meltbench.errors import UsageError
from meltbench.results.export import export
from meltbench.results.schema import SCHEMA_VERSION, RunResult
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
    assert json.loads(lines[0])["schema_version"] == SCHEMA_VERSION


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


def test_llama_bench_jsonl_fields_and_values():
    r = make_result()
    lines = [json.loads(x) for x in export([r], "llama-bench").splitlines()]
    assert [(x["n_prompt"], x["n_gen"]) for x in lines] == [(8, 0), (0, 4)]
    pp, tg = lines
    assert pp["samples_ts"] == list(r.metrics["prefill_tps"].samples)
    assert pp["avg_ts"] == pytest.approx(400.0)
    assert pp["samples_ns"] == [20_000_000] * 3  # 8 tokens at 400 tok/s
    assert tg["avg_ts"] == pytest.approx(100.0) and tg["samples_ns"] == [30_000_000] * 3
    assert pp["n_threads"] == 2 and pp["model_n_params"] == 268098176
    for key in (
        "build_commit",
        "cpu_info",
        "model_filename",
        "model_type",
        "model_size",
        "n_batch",
        "n_ubatch",
        "type_k",
        "n_gpu_layers",
        "n_depth",
        "test_time",
        "avg_ns",
        "stddev_ns",
        "stddev_ts",
    ):
        assert key in pp


def test_parquet_and_load_results_round_trip(tmp_path):
    import pandas as pd

    import meltbench
    from meltbench.results.export import write_parquet
    from meltbench.results.store import ResultStore

    runs = [make_result(), make_result(status="failed")]
    with ResultStore(tmp_path / "r.db") as store:
        for r in runs:
            store.save(r)
    df = meltbench.load_results(tmp_path / "r.db")
    assert len(df) == 2 and set(df["run_id"]) == {r.run_id for r in runs}
    assert df.loc[df["status"] == "ok", "decode_tps_median"].iloc[0] == pytest.approx(100.0)
    write_parquet(runs, str(tmp_path / "r.parquet"))
    back = pd.read_parquet(tmp_path / "r.parquet")
    assert list(back["run_id"]) == [r.run_id for r in runs]
    assert back["prefill_tps_mean"].iloc[0] == pytest.approx(400.0)


def test_a_target_column_only_when_runs_come_from_several_targets():
    one = export([make_result(), make_result()], "md").splitlines()[0]
    assert "| target |" not in one
    pi = make_result().model_copy(update={"target": "pi5"})
    lines = export([make_result(), pi], "md").splitlines()
    assert lines[0].startswith("| model | size | params | engine | target | threads |")
    assert "| local |" in lines[2] and "| pi5 |" in lines[4]
