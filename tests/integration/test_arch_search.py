"""``meltbench arch-search`` end to end on llama.cpp: the tiny example space (six shapes of
11-42M parameters) materialised as random-weight Q4_0 GGUFs, killed after its first
stored point and resumed, the latency model fitted with a held-out error, the fronts
printed and plotted; bad input; the transformers candidate path."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_bad_input import assert_usage_error

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples" / "arch-space-tiny.yaml"


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meltbench.cli", *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def stored(db: Path) -> list[tuple[str, str, str]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT sweep_id, point_key, status FROM runs WHERE sweep_id IS NOT NULL"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_tiny_space_killed_resumed_fitted_and_reported(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meltbench.cli", "arch-search", str(TINY), "--db", str(db), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not stored(db):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "arch-search stored nothing"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    first = stored(db)
    assert 1 <= len(first) < 12

    done = cli("arch-search", str(TINY), "--db", str(db), "--resume", "-q", "-f", "json")
    assert done.returncode == 0, done.stderr
    rows = stored(db)
    # 6 candidates x 2 prompt lengths, each point exactly once, in one sweep (one round).
    assert len(rows) == 12 and len({(s, k) for s, k, _ in rows}) == 12
    assert len({s for s, _, _ in rows}) == 1
    assert all(status == "ok" for _, _, status in rows)
    analysis = json.loads(done.stdout)
    (target,) = analysis["targets"]
    assert target["target"] == "local"
    cands = target["candidates"]
    assert len(cands) == 6 and all(c["round"] == 1 and not c["failure"] for c in cands)
    assert all(10e6 <= c["n_params"] <= 50e6 for c in cands)
    for c in cands:
        assert c["measured"]["decode_ms"] > 0 and c["measured"]["prefill_ms"] > 0
        assert c["measured"]["peak_rss_bytes"] > 0
        assert c["predicted"]["decode_ms"] > 0 and c["predicted"]["prefill_ms"] > 0
    for phase in ("prefill", "decode"):
        f = target["fits"][phase]
        assert f["n_candidates"] == 6 and f["n_rows"] == 12
        assert f["cv_mape"] is not None and f["cv_mape"] >= 0
        assert len(f["held_out"]) == 12
        assert all(v >= 0 for v in f["coef"].values())
    keys = {c["key"] for c in cands}
    for objective in ("decode_ms", "prefill_ms", "peak_rss_bytes"):
        front = target["fronts"][objective]
        assert front and set(front) <= keys
        # the largest candidate is always on the front (nothing has more parameters)
        largest = max(cands, key=lambda c: c["n_params"])
        assert largest["key"] in front

    # Nothing left to run: the table view is printed from the stored sweep.
    table = cli("arch-search", str(TINY), "--db", str(db), "--resume", "-q")
    assert table.returncode == 0, table.stderr
    assert "measured candidates" in table.stdout
    assert "decode model: t_ms =" in table.stdout
    assert "held-out (leave one candidate out) MAPE" in table.stdout
    assert "0 failed" in table.stderr
    assert len(stored(db)) == 12

    report = tmp_path / "report.html"
    sweep_id = rows[0][0]
    made = cli("report", "--db", str(db), "--sweep", sweep_id, "-o", str(report))
    assert made.returncode == 0, made.stderr
    html = report.read_text()
    assert "plot-arch-pareto" in html and "held-out MAPE" in html


def test_bad_spaces_are_one_line_usage_errors(tmp_path: Path) -> None:
    assert_usage_error(cli("arch-search", str(tmp_path / "none.yaml")), "cannot read search space")
    assert_usage_error(cli("arch-search", str(TINY), "--budget-params", "5M..1M"),
                       "--budget-params")  # fmt: skip
    assert_usage_error(cli("arch-search", str(TINY), "--budget-params", "1..2", "--dry-run"),
                       "no shape of the space is inside the parameter budget")  # fmt: skip
    assert_usage_error(cli("arch-search", str(TINY), "--max-candidates", "3",
                           "--db", str(tmp_path / "r.db")),
                       "6 shapes in the budget is more than max_candidates=3")  # fmt: skip
    assert not (tmp_path / "r.db").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("shape:\n  n_layers: 2\n  d_model: 64\n  n_heads: 2\nquant: Q3_Z\n")
    assert_usage_error(
        cli("arch-search", str(bad)), "bad.yaml:5: quant: unknown quantization type 'Q3_Z'"
    )


def test_dry_run_lists_shapes_and_first_round() -> None:
    out = cli("arch-search", str(TINY), "--dry-run", "--strategy", "model-guided",
              "--samples", "4")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "6 shapes in 10M..50M parameters, model-guided, Q4_0 on llama.cpp" in out.stdout
    assert "dropped 2: outside the parameter budget" in out.stdout
    assert out.stdout.count("MQA") == 3 and out.stdout.count("MHA") == 3


def test_transformers_candidates_run_with_random_weights(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("""\
shape: {n_layers: [1, 2, 3], d_model: 64, n_heads: 2, vocab_size: 512, activation: [swiglu, gelu]}
engine: transformers
strategy: random
samples: 3
workload: {n_prompt: 16, n_gen: 4, reps: 1, warmup: 0}
""")  # fmt: skip
    done = cli("arch-search", str(space), "--db", str(tmp_path / "r.db"), "-q", "-f", "json")
    assert done.returncode == 0, done.stderr
    (target,) = json.loads(done.stdout)["targets"]
    measured = [c for c in target["candidates"] if c["round"] == 1]
    assert len(measured) == 3 and all(c["measured"]["decode_ms"] > 0 for c in measured)
    assert target["fits"]["decode"]["cv_mape"] is not None
