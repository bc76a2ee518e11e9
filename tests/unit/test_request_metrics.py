"""Request-workload arithmetic on hand-built records: per-request metrics, turn accounting,
grouping, load figures, the set's version, resizing and the count-only document cut."""

from __future__ import annotations

import pytest

from meltbench.harness.replay import common_prefix
from meltbench.measure.requests import analyze_requests, load_metrics, request_metrics
from meltbench.workloads.base import RequestSet, Session, Turn
from meltbench.workloads.build import cut_with_counter, resize

MS = 1_000_000


def record(**overrides):
    base = {
        "kind": "timed",
        "session": "s",
        "turn": 0,
        "group": "conversation",
        "ok": True,
        "t_start_ns": 0,
        "t_sent_ns": 2 * MS,  # 2 ms of template + tokenizer
        "token_ns": [52 * MS, 62 * MS, 72 * MS, 92 * MS],
        "t_end_ns": 93 * MS,
        "n_input": 110,
        "n_cached": 10,
        "n_output": 4,
        "counts": "engine",
    }
    base.update(overrides)
    return base


def test_request_metrics_exact():
    m = request_metrics(record())
    assert m["prepare_ms"] == 2.0
    assert m["ttft_ms"] == 50.0  # first token - sent
    assert m["e2e_ms"] == 91.0
    assert m["prefill_tps"] == 100 / 0.050  # (110 - 10) tokens processed in 50 ms
    assert m["tpot_ms"] == (91.0 - 50.0) / 3
    assert m["decode_tps"] == 3 / 0.040
    assert m["itl_ms"] == [10.0, 10.0, 20.0]
    assert (m["input_tokens"], m["cached_tokens"], m["output_tokens"]) == (110.0, 10.0, 4.0)
    assert m["app_e2e_ms"] is None


def test_over_http_counts_come_from_usage_not_chunks():
    # 2 chunks carried 6 tokens (usage): decode rate uses the 6, ITL stays per chunk
    m = request_metrics(record(token_ns=[50 * MS, 100 * MS], n_output=6, counts="usage",
                               n_cached=None, t_end_ns=100 * MS))  # fmt: skip
    assert m["decode_tps"] == 5 / 0.050
    assert m["tpot_ms"] == (98.0 - 48.0) / 5
    assert m["itl_ms"] == [50.0]
    assert m["cached_tokens"] is None and m["prefill_tps"] == 110 / 0.048


def test_one_token_has_no_decode_rate_and_parse_time_is_in_app_e2e():
    m = request_metrics(record(token_ns=[52 * MS], n_output=1, parse_ns=3 * MS))
    assert m["decode_tps"] is None and m["tpot_ms"] is None and m["itl_ms"] == []
    assert m["app_e2e_ms"] == 93.0 + 3.0


def test_analysis_groups_by_group_and_turn_and_leaves_warmup_out():
    records = [
        record(kind="warmup", t_sent_ns=1 * MS),
        record(session="a", turn=0),
        record(session="a", turn=1, token_ns=[12 * MS, 22 * MS], n_output=2),
        record(session="b", turn=0, ok=False, error="RuntimeError: boom"),
        record(session="b", turn=0, group="other"),
    ]
    a = analyze_requests(records)
    assert a.counts == {"requests": 4, "ok": 3, "failed": 1, "warmup": 1}
    assert [(g["group"], g["turn"], g["n"], g["failed"]) for g in a.groups] == [
        ("conversation", 0, 1, 1),
        ("conversation", 1, 1, 0),
        ("other", 0, 1, 0),
    ]
    assert a.metrics["ttft_ms"].samples == (50.0, 10.0, 50.0)
    assert a.metrics["itl_ms"].groups == (3, 1, 3)
    assert a.groups[1]["ttft_ms"].median == 10.0


def test_app_parse_is_timed_and_counted():
    verdicts = iter([{"parsed": True, "correct": True}, {"parsed": False, "correct": None}])
    records = [record(session="a"), record(session="b")]
    a = analyze_requests(records, lambda r: next(verdicts))
    assert a.app == {"requests": 2, "parsed": 1, "parse_rate": 0.5, "judged": 1,
                     "correct": 1, "accuracy": 1.0}  # fmt: skip
    assert all(r["parse_ns"] >= 0 for r in records)
    assert a.metrics["app_e2e_ms"].n == 2


def test_load_metrics_over_the_span():
    records = [
        record(t_scheduled_ns=0, t_start_ns=1 * 10**9, t_end_ns=2 * 10**9, n_output=10),
        record(t_start_ns=3 * 10**9, t_end_ns=4 * 10**9, n_output=30, n_input=50),
        record(ok=False, t_start_ns=3 * 10**9, t_end_ns=None),
        record(kind="warmup", t_start_ns=-(10**10), t_end_ns=10**11),
    ]
    load = load_metrics(records)
    assert load == {
        "duration_s": 4.0,
        "completed": 2,
        "failed": 1,
        "request_throughput_rps": 0.5,
        "output_tps": 10.0,
        "input_tps": (110 + 50) / 4.0,
    }


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def _set(n: int = 2) -> RequestSet:
    return RequestSet(
        kind="conversation",
        name="t",
        sessions=tuple(
            Session(id=f"c{i}", group="conversation", turns=(Turn(f"hi {i}", 8),)) for i in range(n)
        ),
    )


def test_version_is_a_hash_of_the_requests():
    a, b = _set(), _set()
    assert a.version == b.version and len(a.version) == 12
    assert _set(3).version != a.version
    assert RequestSet.from_dict(a.to_dict()) == a
    assert a.label == f"conversation:t@{a.version}"


def test_resize_cycles_and_cuts():
    grown = resize(_set(2), 5)
    assert [s.id for s in grown.sessions] == ["c0", "c1", "c0#2", "c1#2", "c0#3"]
    assert grown.info["sessions_in_file"] == 2
    assert [s.id for s in resize(_set(3), 1).sessions] == ["c0"]
    with pytest.raises(ValueError):
        resize(_set(), 0)


def test_cut_with_a_counter_only():
    def count(text: str) -> int:  # one BOS + one token per word
        return 1 + len(text.split())

    cut = cut_with_counter(count)
    assert cut("a b c d e f", 4) == "a b c d"
    assert cut("a b c", 3) == "a b c"
    with pytest.raises(ValueError, match="fewer than 9"):
        cut("a b c", 9)
