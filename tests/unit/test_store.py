import sqlite3

import pytest

from meltbench.errors import UsageError
from meltbench.results.store import DB_SCHEMA_VERSION, ResultStore
from tests.helpers import make_result


def test_round_trip_keeps_everything(tmp_path):
    result = make_result()
    with ResultStore(tmp_path / "r.db") as store:
        store.save(result)
        loaded = store.get(result.run_id)
    assert loaded == result
    assert loaded.repetitions[0].kind == "warmup"
    assert loaded.metrics["decode_tps"].samples == result.metrics["decode_tps"].samples


def test_metric_rows_are_queryable(tmp_path):
    result = make_result()
    db = tmp_path / "r.db"
    with ResultStore(db) as store:
        store.save(result)
    conn = sqlite3.connect(db)
    (median,) = conn.execute(
        "SELECT median FROM metrics WHERE run_id = ? AND name = 'decode_tps'", (result.run_id,)
    ).fetchone()
    assert median == pytest.approx(100.0)  # 3 tokens over 30 ms
    assert conn.execute("PRAGMA user_version").fetchone()[0] == DB_SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM repetitions").fetchone()[0] == 4


def test_list_and_prefix_lookup(tmp_path):
    a, b = make_result(), make_result(status="failed", started_at="2026-11-22T00:00:00+00:00")
    with ResultStore(tmp_path / "r.db") as store:
        store.save(a)
        store.save(b)
        rows = store.list_runs()
        assert [r["run_id"] for r in rows] == [b.run_id, a.run_id]
        assert rows[0]["status"] == "failed"
        assert rows[0]["failure"] == "worker crashed with SIGSEGV"
        assert store.resolve_id(a.run_id[:10]) == a.run_id
        with pytest.raises(UsageError, match="no run"):
            store.resolve_id("zzzz")
        with pytest.raises(UsageError, match="no run"):
            store.resolve_id("")
        assert [r.run_id for r in store.iter_results()] == [a.run_id, b.run_id]


def test_save_is_atomic(tmp_path):
    result = make_result()
    with ResultStore(tmp_path / "r.db") as store:
        store.save(result)
        with pytest.raises(sqlite3.IntegrityError):
            store.save(result)  # same id: the whole second write is rolled back
        assert len(store.list_runs()) == 1
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == len(result.metrics)


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "future.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {DB_SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UsageError, match="newer than this meltbench"):
        ResultStore(db)


@pytest.mark.parametrize(
    ("make_path", "match"),
    [
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: tmp / "missing-folder" / "r.db", "does not exist"),
        (lambda tmp: "/proc/meltbench-test.db", "writable path"),
    ],
)
def test_unusable_paths(tmp_path, make_path, match):
    with pytest.raises(UsageError, match=match):
        ResultStore(make_path(tmp_path))


def test_not_a_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="cannot use results database"):
        ResultStore(junk)


def test_readonly_open_requires_existing_db(tmp_path):
    with pytest.raises(UsageError, match="no results database"):
        ResultStore(tmp_path / "none.db", readonly=True)


def test_migration_from_schema_v1_keeps_runs(tmp_path):
    from meltbench.results.store import _SCHEMA_V1

    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    conn.executescript(_SCHEMA_V1 + "PRAGMA user_version = 1;")
    conn.execute(
        "INSERT INTO runs (run_id, started_at, finished_at, status, test, engine, target, "
        "result_json) VALUES ('r1', 't0', 't1', 'ok', 'pp8+tg4', 'llama.cpp', 'local', '{}')"
    )
    conn.commit()
    conn.close()
    with ResultStore(db, readonly=True) as store:  # a read command upgrades it too
        rows = store.list_runs()
        assert [r["run_id"] for r in rows] == ["r1"]
        assert store.list_sweeps() == []
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    cols = [c[1] for c in conn.execute("PRAGMA table_info(runs)")]
    assert "sweep_id" in cols and "point_key" in cols


def test_a_sweep_point_cannot_be_stored_twice(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        store.create_sweep("s1", "t", "2026-01-01", [{"key": "k1", "params": {}}], {})
        store.save(make_result(), sweep_id="s1", point_key="k1")
        with pytest.raises(sqlite3.IntegrityError):
            store.save(make_result(), sweep_id="s1", point_key="k1")
        assert store.sweep_points_done("s1").keys() == {"k1"}
        assert store.list_sweeps()[0]["stored"] == 1
