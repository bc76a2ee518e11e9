"""SQLite store of runs, with a versioned schema (``PRAGMA user_version``).

Tables (schema version 2):

- ``runs``: one row per run, with the columns one filters on (status, test, model,
  quant, engine, target, times, sweep_id, point_key) and the whole result as JSON (raw
  repetitions excepted). A unique index on (sweep_id, point_key) makes "each point of a
  sweep stored once" a database guarantee.
- ``metrics``: one row per (run, metric) summary, so SQL can query medians and CIs.
- ``repetitions``: one row per (run, repetition) with its raw timestamps as JSON.
- ``sweeps``: one row per sweep: name, source file and its SHA-256, the planned points,
  and the analysis stored at the end (scaling fits, context search).

Version history: 1 -> 2 added ``sweeps`` and the two ``runs`` columns (migrated in place).

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
from meltbench.results.location import DEFAULT_DB, default_db_path
from meltbench.results.schema import Repetition, RunResult

__all__ = ["DB_SCHEMA_VERSION", "DEFAULT_DB", "ResultStore", "default_db_path"]

DB_SCHEMA_VERSION = 2

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

_V1_TO_V2 = """
ALTER TABLE runs ADD COLUMN sweep_id TEXT;
ALTER TABLE runs ADD COLUMN point_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS runs_sweep_point ON runs (sweep_id, point_key)
    WHERE sweep_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    source        TEXT,
    source_sha256 TEXT,
    points_json   TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    analysis_json TEXT
);
"""

# Migrations: MIGRATIONS[v] upgrades a database from version v to v + 1.
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1, 1: _V1_TO_V2}


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
        if readonly and version == 0:
            raise UsageError(f"{self.path} is not a meltbench results database")
        if readonly:
            # An older meltbench database: upgrade it in place (each step is one
            # transaction), then keep reading through a read-write connection.
            if not os.access(self.path, os.W_OK):
                raise UsageError(
                    f"results database {self.path} has schema version {version} and needs "
                    f"an upgrade to {DB_SCHEMA_VERSION}, but it is read-only; make it writable"
                )
            self._conn.close()
            self._conn = sqlite3.connect(self.path)
            self._conn.execute("PRAGMA foreign_keys = ON")
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

    def save(
        self, result: RunResult, sweep_id: str | None = None, point_key: str | None = None
    ) -> None:
        """Write one run (row, metric summaries, raw repetitions) in one transaction.

        Args:
            sweep_id, point_key: the sweep and point this run belongs to, if any.

        Raises:
            sqlite3.IntegrityError: if a run with the same id, or the same sweep point,
                is already stored.
        """
        data = result.to_json_dict()
        reps = data.pop("repetitions")
        model = result.model
        with self._conn:
            self._conn.execute(
                "INSERT INTO runs (run_id, started_at, finished_at, status, failure, test, "
                "model_name, model_path, quant, engine, target, threads, result_json, "
                "sweep_id, point_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    sweep_id,
                    point_key,
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

    def create_sweep(
        self,
        sweep_id: str,
        name: str,
        created_at: str,
        points: list[dict[str, Any]],
        settings: dict[str, Any],
        source: str | None = None,
        source_sha256: str | None = None,
    ) -> None:
        """Record a new sweep and its planned points (one transaction)."""
        with self._conn:
            self._conn.execute(
                "INSERT INTO sweeps (sweep_id, name, created_at, source, source_sha256, "
                "points_json, settings_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    name,
                    created_at,
                    source,
                    source_sha256,
                    json.dumps(points),
                    json.dumps(settings, default=str),
                ),
            )

    def get_sweep(self, sweep_id: str) -> dict[str, Any]:
        """A sweep's row with ``points`` and ``settings`` decoded (unique prefix accepted).

        Raises:
            UsageError: if no single sweep matches.
        """
        rows = self._conn.execute(
            "SELECT sweep_id, name, created_at, source, source_sha256, points_json, "
            "settings_json, analysis_json FROM sweeps WHERE sweep_id LIKE ? LIMIT 2",
            (sweep_id.replace("%", "") + "%",),
        ).fetchall()
        if len(rows) != 1 or not sweep_id:
            what = "is ambiguous" if len(rows) > 1 else "does not exist"
            raise UsageError(
                f"sweep {sweep_id!r} {what} in {self.path}; see meltbench sweep --list"
            )
        sid, name, created, source, sha, points, settings, analysis = rows[0]
        return {
            "sweep_id": sid,
            "name": name,
            "created_at": created,
            "source": source,
            "source_sha256": sha,
            "points": json.loads(points),
            "settings": json.loads(settings),
            "analysis": json.loads(analysis) if analysis else None,
        }

    def latest_sweep_for(self, source: str) -> dict[str, Any] | None:
        """The newest sweep started from experiment file ``source``, or None."""
        row = self._conn.execute(
            "SELECT sweep_id FROM sweeps WHERE source = ? ORDER BY created_at DESC, rowid DESC "
            "LIMIT 1",
            (source,),
        ).fetchone()
        return self.get_sweep(row[0]) if row else None

    def list_sweeps(self) -> list[dict[str, Any]]:
        """Sweeps, newest first: id, name, created_at, source, planned and stored points."""
        rows = self._conn.execute(
            "SELECT s.sweep_id, s.name, s.created_at, s.source, s.points_json, "
            "(SELECT count(*) FROM runs r WHERE r.sweep_id = s.sweep_id) "
            "FROM sweeps s ORDER BY s.created_at DESC, s.rowid DESC"
        ).fetchall()
        return [
            {
                "sweep_id": sid,
                "name": name,
                "created_at": created,
                "source": source,
                "planned": len(json.loads(points)),
                "stored": stored,
            }
            for sid, name, created, source, points, stored in rows
        ]

    def sweep_points_done(self, sweep_id: str) -> dict[str, str]:
        """point_key -> run_id of every stored point of a sweep."""
        return dict(
            self._conn.execute(
                "SELECT point_key, run_id FROM runs WHERE sweep_id = ?", (sweep_id,)
            ).fetchall()
        )

    def sweep_results(self, sweep_id: str) -> list[RunResult]:
        """Every stored run of a sweep, in the order they ran."""
        ids = [
            r[0]
            for r in self._conn.execute(
                "SELECT run_id FROM runs WHERE sweep_id = ? ORDER BY started_at, rowid",
                (sweep_id,),
            )
        ]
        return [self.get(i) for i in ids]

    def set_sweep_analysis(self, sweep_id: str, analysis: dict[str, Any]) -> None:
        """Store the sweep's analysis (scaling fits, context search) as JSON."""
        with self._conn:
            self._conn.execute(
                "UPDATE sweeps SET analysis_json = ? WHERE sweep_id = ?",
                (json.dumps(analysis, default=str), sweep_id),
            )

    def recent_medians(
        self, model_path: str, engine: str, metrics: tuple[str, ...], last: int = 10
    ) -> dict[str, float]:
        """Median over the last ``last`` ok runs of a model file and engine of each
        metric's per-run median (used for duration estimates); metrics never measured
        are absent."""
        out: dict[str, float] = {}
        for name in metrics:
            values = [
                v
                for (v,) in self._conn.execute(
                    "SELECT m.median FROM runs r JOIN metrics m USING (run_id) "
                    "WHERE r.status = 'ok' AND r.model_path = ? AND r.engine = ? "
                    "AND m.name = ? ORDER BY r.started_at DESC LIMIT ?",
                    (model_path, engine, name, last),
                )
            ]
            if values:
                from meltbench.measure.stats import percentile

                out[name] = percentile(values, 50.0)
        return out

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
