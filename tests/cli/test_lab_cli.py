"""``meltbench lab`` from the command line: bad input (exit 2, one line, nothing stored),
the ``ray start`` commands, and an embedded Ray instance (no --address) on this machine."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

LAB = """\
name: one-box
devices:
  box: {url: local, class: linux}
  pi5: {url: "ssh://pi@10.0.0.5", host: lab-1}
"""


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meltbench.cli", "lab", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    lab = tmp_path / "lab.yaml"
    lab.write_text(LAB)
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: tiny\nn_prompt: [16, 32]\nn_gen: 2\nreps: 1\nthreads: 1\n"
                   "devices: box\n")  # fmt: skip
    return lab, exp


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"lab": "devices: {}\n"}, "a lab file needs 'devices:"),
        ({"exp": "devices: jetson\n"}, "devices: 'jetson' matches no device of the lab"),
        ({"exp": "n_gen: -1\n"}, "n_gen"),
        ({"args": ["--address", "127.0.0.1:1"]}, "no Ray head answers at 127.0.0.1:1"),
        ({"args": ["--device-grace", "-1"]}, "--device-grace must be >= 0"),
        ({"drop_exp": True}, "give an experiment file"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_stored(files, tmp_path, extra, message):
    lab, exp = files
    if "lab" in extra:
        lab.write_text(extra["lab"])
    if "exp" in extra:
        exp.write_text(extra["exp"])
    db = tmp_path / "runs.db"
    args = [str(lab)] + ([] if extra.get("drop_exp") else [str(exp)])
    proc = cli(*args, *extra.get("args", []), "--db", str(db))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_hosts_prints_the_ray_start_command_of_each_host(files):
    lab, _ = files
    proc = cli(str(lab), "--hosts", "--address", "10.1.2.3:6379")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        """head: ray start --head --port=6379 --resources='{"device:box": 1}'""",
        """lab-1: ray start --address=10.1.2.3:6379 --resources='{"device:pi5": 1}'""",
    ]


@pytest.mark.integration
def test_embedded_ray_on_this_machine_then_resume_runs_nothing(files, tmp_path):
    lab, exp = files
    db = tmp_path / "runs.db"
    first = cli(str(lab), str(exp), "--db", str(db), "-f", "json")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert [p["state"] for p in out["pairs"]] == ["ok", "ok"]
    assert "embedded Ray instance on this machine" in first.stderr
    (box,) = out["devices"]
    assert (box["device"], box["ok"], box["failed"]) == ("box", 2, 0) and box["busy_s"] > 0
    again = cli(str(lab), str(exp), "--db", str(db), "--resume")
    assert again.returncode == 0, again.stderr
    assert "0 ok, 0 failed, 0 not run, 2 stored before" in again.stderr
    assert "lab summary" in again.stdout
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT target, status FROM runs").fetchall()
    conn.close()
    assert rows == [("box", "ok"), ("box", "ok")]
