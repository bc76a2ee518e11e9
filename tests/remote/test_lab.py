"""``meltbench lab`` on a real multi-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``): three devices, each a resource of its own node -- this
machine (local), the SSH device on the loopback sshd, and the fake phone (adb) -- one
experiment across them into one store; the driver SIGKILLed and resumed; a worker node
removed mid-run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import write_tiny_gguf
from tests.remote.adb_fixtures import SERIAL, STANDIN, make_phone
from tests.remote.fake_adb_server import FakeAdbServer

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meltbench.cli", "lab", *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture
def phone_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The fake phone's adb server; its address in the environment the Ray nodes inherit."""
    server = FakeAdbServer(make_phone(tmp_path / "phone"), SERIAL).start()
    monkeypatch.setenv("ANDROID_ADB_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    yield server
    server.stop()


@pytest.fixture
def cluster(phone_env):
    """A head node holding device ``box``; tests add the other nodes."""
    c = ray_cluster_utils.Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 1, "resources": {"device:box": 1}, "include_dashboard": False},
    )
    yield c
    c.shutdown()


def write_lab(path: Path, sshd, *, phone: bool = True) -> Path:
    ssh = {"url": sshd.url, "identity_file": str(sshd.user_key),
           "known_hosts": str(sshd.known_hosts), "python": sys.executable,
           "workdir": str(sshd.workdir), "host": "node-2", "class": "linux"}  # fmt: skip
    devices = {"box": {"url": "local", "host": "head", "class": "linux"}, "pi": ssh}
    if phone:
        devices["phone"] = {"url": f"adb://{SERIAL}", "host": "node-3", "class": "android",
                            "engine_options": {"llama_bench": str(STANDIN)}}  # fmt: skip
    path.write_text(yaml.safe_dump({"name": "test-lab", "devices": devices}))
    return path


def stored(db: Path) -> list[tuple[str, str, str, str]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT run_id, point_key, target, status FROM runs").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver exited early: {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_three_devices_on_three_nodes_one_store_driver_killed_and_resumed(
    cluster, set_up_target, sshd, tmp_path
):
    cluster.add_node(num_cpus=1, resources={"device:pi": 1})
    cluster.add_node(num_cpus=1, resources={"device:phone": 1})
    cluster.wait_for_nodes()
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    lab = write_lab(tmp_path / "lab.yaml", sshd)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "lab-test", "n_prompt": [32, 64], "n_gen": 4, "reps": 1, "threads": 1,
        "devices": "class:linux",
        "include": [{"devices": "phone", "model": str(tiny), "n_prompt": 64, "n_gen": 16,
                     "reps": 3}],
    }))  # fmt: skip
    db = tmp_path / "lab.db"
    args = (str(lab), str(exp), "--address", cluster.address, "--db", str(db), "-q")

    plan = cli(*args, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "5 (point, device) pairs" in plan.stdout

    driver = subprocess.Popen([sys.executable, "-m", "meltbench.cli", "lab", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    wait_for(lambda: len(stored(db)) >= 1, 300, driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(30)
    before = stored(db)
    assert 1 <= len(before) < 5

    done = cli(*args, "--resume", "-f", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    after = stored(db)
    assert len(after) == 5 and len({key for _, key, _, _ in after}) == 5  # none twice
    assert set(before) <= set(after)  # nothing measured before the kill was lost
    assert sorted(t for _, _, t, _ in after) == ["box", "box", "phone", "pi", "pi"]
    assert all(status == "ok" for *_, status in after)
    states = {p["state"] for p in out["pairs"]}
    assert states <= {"ok", "stored"} and sum(p["state"] == "stored" for p in out["pairs"]) >= 1
    by_device = {d["device"]: d for d in out["devices"]}
    assert set(by_device) == {"box", "pi", "phone"}
    for r in out["results"]:
        assert r["environment"]["lab"]["device"] == r["target"]
    phone = next(r for r in out["results"] if r["target"] == "phone")
    assert phone["metrics"]["decode_tps"]["n"] == 3  # the recorded llama-bench JSON


def test_a_worker_node_removed_mid_run(cluster, set_up_target, sshd, tmp_path):
    node = cluster.add_node(num_cpus=1, resources={"device:pi": 1})
    cluster.wait_for_nodes()
    lab = write_lab(tmp_path / "lab.yaml", sshd, phone=False)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"name": "node-loss", "n_prompt": [32, 48, 64, 80],
                                   "n_gen": 4, "reps": 1, "threads": 1}))  # fmt: skip
    db = tmp_path / "lab.db"
    args = (str(lab), str(exp), "--address", cluster.address, "--db", str(db), "-q",
            "--device-grace", "2")  # fmt: skip
    command = [sys.executable, "-m", "meltbench.cli", "lab", *args, "-f", "json"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(t == "pi" for _, _, t, _ in stored(db)), 300, driver)
    cluster.remove_node(node)
    out_text, err_text = driver.communicate(timeout=600)
    assert driver.returncode == 1, err_text[-3000:]
    assert out_text, err_text[-3000:]
    out = json.loads(out_text)
    pi = [p for p in out["pairs"] if p["device"] == "pi"]
    box = [p for p in out["pairs"] if p["device"] == "box"]
    assert all(p["state"] == "ok" for p in box) and len(box) == 4  # the lab went on
    assert sum(p["state"] == "ok" for p in pi) >= 1
    failed = [p for p in pi if p["state"] == "failed"]
    unrun = [p for p in pi if p["state"] == "unrun"]
    assert len(failed) + len(unrun) >= 1
    for p in failed:
        assert "died" in p["reason"].lower() or "node" in p["reason"].lower()
    for p in unrun:
        assert "left the cluster" in p["reason"]
    assert {"stored": len(stored(db))} == {"stored": 4 + len(pi) - len(unrun)}

    cluster.add_node(num_cpus=1, resources={"device:pi": 1})  # the device is back
    cluster.wait_for_nodes()
    again = cli(*args, "--resume", "-f", "json")
    rows = stored(db)
    assert len(rows) == 8 and len({k for _, k, _, _ in rows}) == 8
    assert again.returncode == (1 if failed else 0), again.stderr
