"""SQLite store of runs, with a versioned schema (``PRAGMA user_version``).

Tables (schema version 1):

- ``runs``: one row per run, with the columns one filters on (status, test, model,
  quant, engine, target, times) and the whole result as JSON (raw repetitions excepted).
- ``metrics``: one row per (run, metric) summary, so SQL can query medians and CIs.
- ``repetitions``: one row per (run, repetition) with its raw timestamps as JSON.

Every run is written in a single transaction: a process killed mid-write leaves the
database as it was before (SQLite's atomic commit), never half a run. The database is
opened and its schema created before a run starts, so an unwritable path fails before
any measuring.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.results.schema import Repetition, RunResult

__all__ = ["DB_SCHEMA_VERSION", "DEFAULT_DB", "ResultStore", "default_db_path"]

DB_SCHEMA_VERSION = 1
DEFAULT_DB = "meltbench.db"

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    failure      TEXT,
    test         TEXT NOT NULL,
    model_name   TEXT,
    model_path   TEXT,
    quant        TEXT,
    engine       TEXT NOT NULL,
    target       TEXT NOT NULL,
    threads      INTEGER,
    result_json  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS metrics (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    n         INTEGER NOT NULL,
    mean      REAL NOT NULL,
    median    REAL NOT NULL,
    stddev    REAL,
    min       REAL NOT NULL,
    max       REAL NOT NULL,
    p90       REAL NOT NULL,
    p99       REAL NOT NULL,
    ci95_low  REAL,
    ci95_high REAL,
    samples_json TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS repetitions (
    run_id    TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    data_json TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
);
"""

# Migrations: MIGRATIONS[v] upgrades a database from version v to v + 1.
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1}


def default_db_path() -> Path:
    """``$MELTBENCH_DB`` if set, else ``./meltbench.db``."""
    return Path(os.environ.get("MELTBENCH_DB") or DEFAULT_DB)


class ResultStore:
    """Runs in an SQLite database.

    Args:
        path: database file; created (with its schema) if missing.
        readonly: open for reading only; the file must exist.

    Raises:
        UsageError: the path is a directory, its folder does not exist, the file cannot
            be created or written, it is not an SQLite database, or its schema is newer
            than this meltbench.
    """

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(path).expanduser()
        self._check_path(readonly)
        try:
            if readonly:
                uri = f"file:{self.path.resolve()}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True)
            else:
                self._conn = sqlite3.connect(self.path)
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(readonly)
        except sqlite3.DatabaseError as exc:
            raise UsageError(
                f"cannot use results database {self.path} ({exc}); "
                "pass --db with a writable path to a new or existing SQLite file"
            ) from exc

    def _check_path(self, readonly: bool) -> None:
        p = self.path
        if p.is_dir():
            raise UsageError(f"results database path is a directory: {p}; pass --db FILE.db")
        if readonly:
            if not p.exists():
                raise UsageError(f"no results database at {p}; run a benchmark first or pass --db")
            return
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(
                f"folder of the results database does not exist: {parent}; "
                "create it or pass --db with another path"
            )
        if (p.exists() and not os.access(p, os.W_OK)) or not os.access(parent, os.W_OK):
            raise UsageError(
                f"results database {p} is not writable; pass --db with a writable path"
            )

    def _migrate(self, readonly: bool) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > DB_SCHEMA_VERSION:
            raise UsageError(
                f"results database {self.path} has schema version {version}, newer than this "
                f"meltbench supports ({DB_SCHEMA_VERSION}); upgrade meltbench"
            )
        if version == DB_SCHEMA_VERSION:
            if not readonly:
                # Take and release a write lock now, so a read-only file or folder fails
                # before any measuring rather than when the result is saved.
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("CREATE TABLE IF NOT EXISTS _write_probe (x INTEGER)")
                self._conn.rollback()
            return
        if readonly:
            raise UsageError(f"{self.path} is not a meltbench results database")
        while version < DB_SCHEMA_VERSION:  # each step is one transaction
            self._conn.executescript(
                "BEGIN;" + MIGRATIONS[version] + f"PRAGMA user_version = {version + 1};COMMIT;"
            )
            version += 1

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, result: RunResult) -> None:
        """Write one run (row, metric summaries, raw repetitions) in one transaction.

        Raises:
            sqlite3.IntegrityError: if a run with the same id is already stored.
        """
        data = result.to_json_dict()
        reps = data.pop("repetitions")
        model = result.model
        with self._conn:
            self._conn.execute(
                "INSERT INTO runs (run_id, started_at, finished_at, status, failure, test, "
                "model_name, model_path, quant, engine, target, threads, result_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    result.run_id,
                    result.started_at,
                    result.finished_at,
                    result.status,
                    result.failure,
                    result.test,
                    model.get("name"),
                    model.get("path"),
                    model.get("quant"),
                    result.spec.engine.name,
                    result.target,
                    result.settings.get("threads"),
                    json.dumps(data),
                ),
            )
            self._conn.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        result.run_id,
                        name,
                        s.n,
                        s.mean,
                        s.median,
                        s.stddev,
                        s.min,
                        s.max,
                        s.p90,
                        s.p99,
                        s.ci95_low,
                        s.ci95_high,
                        json.dumps(list(s.samples)),
                    )
                    for name, s in result.metrics.items()
                ],
            )
            self._conn.executemany(
                "INSERT INTO repetitions VALUES (?, ?, ?, ?)",
                [(result.run_id, r["index"], r["kind"], json.dumps(r)) for r in reps],
            )

    def list_runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Run rows (no JSON), newest first: run_id, started_at, status, failure, test,
        model_name, quant, engine, target, threads."""
        sql = (
            "SELECT run_id, started_at, finished_at, status, failure, test, model_name, quant, "
            "engine, target, threads FROM runs ORDER BY started_at DESC, rowid DESC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        cur = self._conn.execute(sql)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def resolve_id(self, prefix: str) -> str:
        """The full run id starting with ``prefix``.

        Raises:
            UsageError: if no run or more than one run matches.
        """
        rows = self._conn.execute(
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' LIMIT 2",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        if not rows or not prefix:
            raise UsageError(
                f"no run with id {prefix!r} in {self.path}; see meltbench results list"
            )
        if len(rows) > 1:
            raise UsageError(f"run id prefix {prefix!r} is ambiguous; give more characters")
        return str(rows[0][0])

    def get(self, run_id: str) -> RunResult:
        """Load one run, raw repetitions included (``run_id`` may be a unique prefix).

        Raises:
            UsageError: if no single run matches.
        """
        full = self.resolve_id(run_id)
        (blob,) = self._conn.execute(
            "SELECT result_json FROM runs WHERE run_id = ?", (full,)
        ).fetchone()
        data = json.loads(blob)
        data["repetitions"] = [
            Repetition.model_validate(json.loads(r))
            for (r,) in self._conn.execute(
                "SELECT data_json FROM repetitions WHERE run_id = ? ORDER BY idx", (full,)
            )
        ]
        return RunResult.model_validate(data)

    def iter_results(self) -> Iterator[RunResult]:
        """Every stored run, oldest first."""
        ids = [
            r[0] for r in self._conn.execute("SELECT run_id FROM runs ORDER BY started_at, rowid")
        ]
        for run_id in ids:
            yield self.get(run_id)
