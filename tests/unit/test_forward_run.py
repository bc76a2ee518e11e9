"""Forward tasks on the host side, pure code: defaults, checks, pass metrics, energy of the
passes, the result row (no engine runs here: tests/integration/test_forward_engines.py)."""

from __future__ import annotations

import pytest

from meltbench.api import build_spec, prepare
from meltbench.errors import UsageError
from meltbench.forward.analysis import forward_energy, pass_metrics
from meltbench.results.tables import FORWARD_COLUMNS, bench_columns, bench_rows, forward_row
from meltbench.sensors.base import Channel
from meltbench.sensors.sampler import SensorSeries
from tests.helpers import make_forward_result, make_result

MS = 1_000_000


def reps(*pass_ms: float, warmup: int = 1) -> list[dict]:
    out, t = [], 10 * MS
    for i, ms in enumerate(pass_ms):
        end = t + round(ms * MS)
        out.append({"index": i, "kind": "warmup" if i < warmup else "timed",
                    "t_start_ns": t, "t_end_ns": end})  # fmt: skip
        t = end + MS
    return out


def test_a_preset_sets_the_task_random_weights_and_torch():
    spec = build_spec(model="bert-base")
    assert (spec.workload.task, spec.model.weights, spec.engine.name) == (
        "encode", "random", "torch")  # fmt: skip
    assert spec.workload.label == "encode-b1-s128"


def test_a_task_alone_runs_its_default_model_at_its_resolution():
    spec = build_spec(task="classify", batch_size=8)
    assert spec.model.ref == "mobilenetv4_conv_small"
    assert spec.workload.resolution == 224
    assert spec.workload.label == "classify-b8-r224"
    assert build_spec(task="classify", resolution=96).workload.label == "classify-b1-r96"


def test_generation_keeps_its_defaults():
    spec = build_spec()
    assert (spec.workload.task, spec.engine.name, spec.workload.label) == (
        "generate", "llama.cpp", "pp512+tg128")  # fmt: skip


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"task": "classify", "engine": "mlx"}, "engine 'mlx' runs --task encode, not classify"),
        ({"model": "bert-tiny", "seq_len": 513}, "longer than bert-tiny's 512 positions"),
        ({"model": "roberta-base", "seq_len": 600}, "roberta-base's 512 positions"),
        ({"model": "bert-tiny", "task": "classify"}, "is a model for --task encode"),
        ({"model": "bert-tiny", "weights": "pretrained"}, "an architecture preset without weights"),
        ({"model": "bert-tiny", "dtype": "float16"}, "float32 only"),
        ({"model": "bert-tiny", "target": "ssh://me@host"}, "local target"),
        (
            {"model": "bert-tiny", "engine_options": {"mode": "x"}},
            "engine 'torch' has no option mode",
        ),
        ({"task": "classify", "model": "no_such_net", "resolution": 64}, "nor a timm model"),
        ({"task": "classify", "model": "resnet18"}, "give its input size with --resolution"),
        ({"task": "classify", "weights": "pretrained"}, "use --weights random"),
        ({"task": "encode", "model": "/no/such/folder"}, "not an encoder preset"),
    ],
)
def test_bad_forward_specs_are_refused_in_one_line(options, fragment):
    with pytest.raises(UsageError) as err:
        prepare(build_spec(**options))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_a_local_config_json_is_an_encoder(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"model_type": "bert", "vocab_size": 100, "max_position_embeddings": 64}'
    )
    prepared = prepare(build_spec(model=str(tmp_path), task="encode", seq_len=64, weights="random"))
    assert prepared.forward["task"] == "encode"
    assert prepared.forward["seq_len"] == 64
    with pytest.raises(UsageError, match="longer than"):
        prepare(build_spec(model=str(tmp_path), task="encode", seq_len=65, weights="random"))


def test_pass_metrics_are_exact_and_the_cold_pass_is_the_first():
    samples, cold = pass_metrics(reps(7.0, 2.0, 4.0, 2.5), 4)
    assert samples["latency_ms"] == [2.0, 4.0, 2.5]
    assert samples["throughput_items_per_s"] == [2000.0, 1000.0, 1600.0]
    assert cold == {"latency_ms": 7.0, "throughput_items_per_s": 4 / 0.007}
    samples, cold = pass_metrics(reps(3.0, warmup=0), 1)  # no warmup: pass 0 is timed
    assert samples["latency_ms"] == [3.0] and cold["latency_ms"] == 3.0
    assert pass_metrics([], 1) == ({"latency_ms": [], "throughput_items_per_s": []}, {})


def test_pass_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="items_per_pass must be >= 1"):
        pass_metrics(reps(1.0), 0)
    bad = [{"index": 3, "kind": "timed", "t_start_ns": 10, "t_end_ns": 5}]
    with pytest.raises(ValueError, match="pass 3 ends before it starts"):
        pass_metrics(bad, 1)


def test_energy_of_the_passes_is_one_window_per_item():
    """A 10 W power channel over timed passes that span 10 ms .. 22 ms (the warmup and
    the gaps between passes inside): 0.12 J for 3 x 2 items; 2 W idle leaves 8 W net."""
    power = Channel("board:power", "power", scope="board", total=True)
    series = SensorSeries(channels=[power], t_ns=[0, 40 * MS], values=[[10.0, 10.0]])
    passes = [{"index": 0, "kind": "warmup", "t_start_ns": 0, "t_end_ns": 5 * MS}] + [
        {"index": i, "kind": "timed", "t_start_ns": (10 + 4 * (i - 1)) * MS,
         "t_end_ns": (12 + 4 * (i - 1)) * MS + (2 * MS if i == 3 else 0)}
        for i in (1, 2, 3)
    ]  # fmt: skip
    energy, warnings = forward_energy(series, passes, 2, 2.0, [power])
    assert warnings == []
    assert energy["energy_j_forward"] == pytest.approx(0.12)
    assert energy["avg_power_w_forward"] == pytest.approx(10.0)
    assert energy["j_per_item"] == pytest.approx(0.02)
    assert energy["j_per_item_net"] == pytest.approx(0.016)
    assert forward_energy(series, passes[:1], 2, None, [power]) == ({}, [])


def test_the_forward_row_has_its_own_columns_and_exact_values():
    result = make_forward_result(4, [2.0, 4.0, 2.5], max_abs_diff=7.2e-7)
    row = forward_row(result)
    assert bench_rows(result) == [row]
    assert (row["test"], row["p50 ms"], row["cold ms"], row["max |Δ|"]) == (
        "encode-b4-s16", "2.50", "4.00", "7.2e-07")  # fmt: skip
    assert row["items/s"] == "1533.33 ± 503.32"  # mean and stddev of 2000, 1000, 1600
    assert row["engine"] == "torch" and row["params"] == "4.39 M"
    assert bench_columns([result]) == FORWARD_COLUMNS


def test_a_mismatch_and_a_failure_show_in_the_row():
    differ = forward_row(make_forward_result(1, [1.0], max_abs_diff=0.5, match=False))
    assert differ["max |Δ|"] == "0.5 FAIL"
    failed = forward_row(make_forward_result(1, [1.0], status="failed"))
    assert failed["items/s"].endswith("FAILED")


def test_mixed_tables_keep_both_kinds_of_columns():
    columns = bench_columns([make_result(), make_forward_result(1, [1.0])])
    assert columns[:3] == ("model", "size", "params")
    assert "t/s" in columns and "items/s" in columns and "cold ms" in columns
    assert len(columns) == len(set(columns))
