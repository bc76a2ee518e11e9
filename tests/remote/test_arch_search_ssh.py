"""``meltbench arch-search`` on two targets, this machine and the SSH device on loopback:
the candidates are pushed to the device and measured there, and the fronts compared."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.remote.conftest import TARGET

SPACE = """\
name: tiny-two-targets
shape:
  n_layers: [4, 8]
  d_model: [256, 512]
  n_heads: 4
  n_kv_heads: [4, 1]
  ffn_ratio: 4
  vocab_size: 16384
budget_params: 10M..50M
quant: Q4_0
workload: {n_prompt: 64, n_gen: 8, reps: 1}
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meltbench.cli", "arch-search", *args],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def test_two_targets_measured_and_their_fronts_compared(targets_env, set_up_target, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    db = tmp_path / "runs.db"
    args = (str(space), "--target", "local", "--target", TARGET, "--db", str(db), "-q")
    done = cli(*args, "-f", "json")
    assert done.returncode == 0, done.stderr
    analysis = json.loads(done.stdout)
    local, remote = analysis["targets"]
    assert (local["target"], remote["target"]) == ("local", TARGET)
    for t in (local, remote):
        assert len([c for c in t["candidates"] if c["round"] == 1 and not c["failure"]]) == 6
        assert t["fits"]["decode"]["cv_mape"] is not None
        assert t["fronts"]["decode_ms"]
    # each target ran its own sweep; the remote one's runs say where they ran
    assert set(local["sweep_ids"]).isdisjoint(remote["sweep_ids"])
    comparison = analysis["comparison"]
    assert comparison["targets"] == ["local", TARGET] and comparison["n"] == 6
    assert comparison["spearman"] is not None and -1 <= comparison["spearman"] <= 1
    assert set(comparison["both"]) <= set(comparison["front_a"]) & set(comparison["front_b"])

    table = cli(*args, "--resume")  # everything stored: printed from the database
    assert table.returncode == 0, table.stderr
    assert f"arch-search on {TARGET}: measured candidates" in table.stdout
    assert f"decode fronts: local vs {TARGET}" in table.stdout
    assert "Spearman rank correlation of decode ms over 6 shapes" in table.stdout
    conn = sqlite3.connect(Path(db))
    targets = [t for (t,) in conn.execute("SELECT target FROM runs")]
    conn.close()
    assert sorted(targets) == ["local"] * 6 + [TARGET] * 6
