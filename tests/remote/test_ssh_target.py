"""SSH targets against a real OpenSSH server on loopback (see conftest.py).

Covers the transport (run, stream, kill, push/pull, quoting), host-key verification,
unreachable hosts, ``meltbench target setup``, the full default-model benchmark through
the target compared with a local run, disconnects mid-run, and a model file named
``a b;rm -rf x.gguf``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

import meltbench
from meltbench.errors import UsageError
from meltbench.results.store import ResultStore
from meltbench.targets.base import TargetError
from meltbench.targets.config import open_target, parse_target
from meltbench.targets.ssh import HostKeyError
from tests.remote.conftest import TARGET, free_port

pytestmark = pytest.mark.integration

SMALL = dict(n_prompt=64, n_gen=16)
#: How soon after a fault the host must give the agent's stream up, seconds. Measured on a
#: 2-core AMD EPYC, also with the tests and a busy loop sharing one core: 0.0 s for a
#: killed connection or agent, 3.3 s for a hung device (1 s of silence, then the 2 s
#: liveness check these tests set). A missed fault costs far more: TCP keepalive's ~45 s
#: for a vanished peer, the 6-hour deadline for a hung device.
FAULT_NOTICED_S = 20.0


def default_model() -> Path:
    from meltbench.models.resolve import resolve_model

    return Path(resolve_model("gemma3-270m-q4_k_m").path)


# -- naming targets ------------------------------------------------------------------------


def test_parse_urls_and_names(sshd, tmp_path):
    spec = parse_target("ssh://pi@10.0.0.5:2222")
    assert (spec.kind, spec.user, spec.host, spec.port) == ("ssh", "pi", "10.0.0.5", 2222)
    spec = parse_target("ssh://[fe80::1]:22")
    assert (spec.host, spec.port, spec.user) == ("fe80::1", 22, None)
    assert parse_target("ssh://host").url == "ssh://host"
    assert parse_target("local").kind == "local"
    for bad in ("ssh://", "ssh://host:99999", "ssh://a b", "ssh://[::1", "ftp://x", "host;rm"):
        with pytest.raises(UsageError):
            parse_target(bad)
    spec = parse_target(TARGET, sshd.targets_file)
    assert spec.port == sshd.port and spec.known_hosts == str(sshd.known_hosts)
    with pytest.raises(UsageError, match=r"unknown target 'nope'.*known: ssh-test"):
        parse_target("nope", sshd.targets_file)
    with pytest.raises(UsageError, match="does not exist"):
        parse_target("nope", tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  pi: {url: ssh://pi@h, password: hunter2}\n")
    with pytest.raises(UsageError, match="password_env"):
        parse_target("pi", bad)


# -- the transport (SSH, and the local reference implementation) ---------------------------


@pytest.fixture(params=["ssh", "local"])
def target(request, tmp_path):
    """The same contract on both transports."""
    if request.param == "ssh":
        yield request.getfixturevalue("ssh_target")
        return
    from meltbench.targets.local import LocalTarget

    local = LocalTarget.from_spec(parse_target("local"))
    local.workdir = str(tmp_path / "local work")
    yield local


def test_run_quotes_every_argument(target, tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("alive")
    odd = ["a b", "$(rm -f " + str(canary) + ")", "`id`", "x;y", "it's", '"q"', "*", "\\n"]
    done = target.run(["printf", "%s\\n", *odd])
    assert done.ok and done.stdout.splitlines() == odd
    assert canary.read_text() == "alive"
    assert target.run(["sh", "-c", "echo oops >&2; exit 3"]).returncode == 3
    assert target.run(["sh", "-c", "echo oops >&2; exit 3"]).stderr == "oops\n"
    assert target.run(["no-such-command-here"]).returncode == 127
    assert target.run(["cat"], input="one\ntwo").stdout == "one\ntwo"
    t0 = time.monotonic()
    with pytest.raises(TargetError, match="timed out"):
        target.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - t0 < 10


def test_start_streams_and_kill_stops(target):
    script = "for i in 1 2 3; do echo line$i; done; echo err >&2; exit 4"
    proc = target.start(["sh", "-c", script])
    assert list(proc.lines()) == ["line1", "line2", "line3"]
    assert proc.wait(10) == 4
    assert proc.stderr_tail() == ["err"]

    proc = target.start(["python3", "-c", "import os; os.kill(os.getpid(), 9)"])
    assert list(proc.lines()) == []
    assert proc.wait(10) == -signal.SIGKILL  # exit-signal, as subprocess reports it

    proc = target.start(["sleep", "60"])
    time.sleep(0.3)
    assert proc.pid is not None and psutil.pid_exists(proc.pid)
    t0 = time.monotonic()
    proc.kill()
    assert list(proc.lines()) == []
    assert time.monotonic() - t0 < 10
    deadline = time.monotonic() + 10
    while psutil.pid_exists(proc.pid) and psutil.Process(proc.pid).status() != "zombie":
        assert time.monotonic() < deadline, "the remote sleep survived kill()"
        time.sleep(0.05)


def test_push_pull_odd_names(target, tmp_path):
    src = tmp_path / "a b;rm -rf x.bin"
    src.write_bytes(os.urandom(300_000))
    remote = posixpath.join(target.workdir, "t", "new dir", "it's $(x)", src.name)
    target.push(str(src), remote)
    assert Path(remote).read_bytes() == src.read_bytes()
    back = tmp_path / "back" / "c;d"
    target.pull(remote, str(back))
    assert back.read_bytes() == src.read_bytes()
    assert target.read_file(remote + ".missing") is None
    with pytest.raises(TargetError):
        target.pull(remote + ".missing", str(tmp_path / "x"))
    facts = target.describe()
    assert facts["workdir"] == target.workdir and facts["kind"] == target.kind
    text = repr(facts)
    assert "user_key" not in text and "identity" not in text and "password" not in text


# -- host keys -----------------------------------------------------------------------------------


def test_unknown_host_key_refused_then_accepted_on_request(sshd, tmp_path):
    known = tmp_path / "ssh" / "known_hosts"  # does not exist yet
    targets = sshd.write_targets(
        tmp_path / "targets.yaml",
        fresh={"url": sshd.url, "identity_file": str(sshd.user_key), "known_hosts": str(known)},
    )
    with pytest.raises(HostKeyError, match="accept_new_host_key: true") as err:
        open_target("fresh", targets)
    assert "SHA256:" in str(err.value) and "--accept-new-host-key" in str(err.value)
    assert not known.exists() or known.read_text() == ""
    # the same refusal through a run: a one-line usage error, nothing measured
    os.environ["MELTBENCH_TARGETS"] = str(targets)
    try:
        with pytest.raises(UsageError, match="not in"):
            meltbench.run(target="fresh", n_prompt=8, n_gen=2, reps=1)
    finally:
        del os.environ["MELTBENCH_TARGETS"]

    with open_target("fresh", targets, accept_new_host_key=True) as target:
        assert target.run(["true"]).ok
    assert known.read_text().split() == [f"[127.0.0.1]:{sshd.port}", *sshd.host_pub.split()]
    with open_target("fresh", targets) as target:  # now known: no option needed
        assert target.run(["true"]).ok


def test_changed_host_key_always_refused(sshd, tmp_path):
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    targets = sshd.write_targets(
        tmp_path / "targets.yaml",
        moved={"url": sshd.url, "identity_file": str(sshd.user_key), "known_hosts": str(known)},
    )
    for accept in (False, True):
        with pytest.raises(HostKeyError, match=r"CHANGED.*ssh-keygen -R"):
            open_target("moved", targets, accept_new_host_key=accept)
    assert known.read_text().count("\n") == 1  # nothing appended


# -- unreachable -----------------------------------------------------------------------------------


def test_unreachable_host_fails_fast_with_a_clear_message(sshd, tmp_path):
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    refused = rf"cannot reach ssh://127\.0\.0\.1:{port}: connection refused"
    with pytest.raises(TargetError, match=refused):
        open_target(f"ssh://127.0.0.1:{port}")
    with pytest.raises(UsageError, match="cannot reach"):
        meltbench.run(target=f"ssh://{sshd.user}@127.0.0.1:{port}", n_prompt=8, n_gen=2, reps=1)
    # an address that never answers (TEST-NET-1): the connect timeout bounds it
    targets = sshd.write_targets(
        tmp_path / "targets.yaml", void={"url": "ssh://192.0.2.1", "connect_timeout_s": 2}
    )
    with pytest.raises(TargetError, match=r"cannot reach ssh://192.0.2.1:22"):
        open_target("void", targets)
    assert time.monotonic() - t0 < 15


# -- setup, the benchmark, faults ------------------------------------------------------------------


def test_setup_is_recorded_and_idempotent(sshd, set_up_target):
    rec = set_up_target
    venv = str(sshd.workdir / "venv")
    assert rec["venv"] == venv and rec["system_site_packages"] is True
    assert rec["meltbench_file"].startswith(venv + "/")  # the pushed wheel, not the checkout
    assert rec["engines"]["llama.cpp"]["available"] is True
    assert rec["packages"]["llama-cpp-python"]
    assert (sshd.workdir / "setup.json").is_file()
    from meltbench.targets.setup import setup_target

    again = setup_target(TARGET, system_site_packages=True, targets_file=sshd.targets_file)
    assert again["installed"] is False and again["venv_created"] is False
    assert again["wheel"]["action"] == "present"


def test_not_set_up_target_is_a_usage_error(sshd, tmp_path, monkeypatch):
    targets = sshd.write_targets(
        tmp_path / "targets.yaml",
        bare={
            "url": sshd.url,
            "identity_file": str(sshd.user_key),
            "known_hosts": str(sshd.known_hosts),
            "workdir": str(tmp_path / "bare device"),
        },
    )
    monkeypatch.setenv("MELTBENCH_TARGETS", str(targets))
    with pytest.raises(UsageError, match=r"target bare is not set up.*meltbench target setup bare"):
        meltbench.run(target="bare", n_prompt=8, n_gen=2, reps=1)


def test_default_model_benchmark_matches_a_local_run(targets_env, set_up_target, tmp_path):
    db = tmp_path / "runs.db"
    events: list[dict] = []
    local = meltbench.run(db=db, reps=2, **SMALL)
    remote = meltbench.run(target=TARGET, db=db, reps=2, on_event=events.append, **SMALL)
    assert local.ok and remote.ok, (local.failure, remote.failure)
    with ResultStore(db, readonly=True) as store:
        stored = {r.run_id: r for r in store.iter_results()}
    lr, rr = stored[local.run_id], stored[remote.run_id]
    assert rr.status == "ok" and rr.target == TARGET and lr.target == "local"
    assert set(rr.metrics) == set(lr.metrics)
    for name in ("ttft_ms", "prefill_tps", "decode_tps", "itl_ms", "peak_rss_bytes", "load_ms"):
        assert rr.metrics[name].min > 0, name
    assert rr.metrics["ttft_ms"].n == lr.metrics["ttft_ms"].n == 2
    assert len(rr.repetitions) == len(lr.repetitions) == 3  # warmup + 2
    assert rr.test == lr.test == "pp64+tg16"
    assert rr.memory["achieved_hz"] and rr.memory["samples"]  # sampled on the device
    # the environment is the device's: its venv Python ran the worker
    venv = str(targets_env.workdir / "venv")
    assert rr.environment["python_executable"].startswith(venv + "/")
    assert set(rr.environment) == set(lr.environment)
    assert set(rr.device_state) == set(lr.device_state)
    pushed = [e for e in events if e.get("event") == "target" and e.get("phase") == "pushed"]
    assert pushed and pushed[0]["remote"].startswith(str(targets_env.workdir / "models") + "/")
    assert pushed[0]["remote"].endswith("/" + default_model().name)

    # the model is already there: the second push is skipped (checksum marker)
    from meltbench.targets.remote_run import push_model

    with open_target(TARGET) as target:
        again = push_model(target, default_model())
    assert again["action"] == "present" and again["remote"] == pushed[0]["remote"]
    assert again["seconds"] < 5


def test_bandwidth_is_measured_on_the_device(targets_env, set_up_target, tmp_path, monkeypatch):
    """``meltbench bandwidth --target`` runs the kernels in the device's venv, and the
    figure is cached under the target's name (the roof of its later runs)."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "meltbench.cli", "bandwidth", "--target", TARGET]
    cmd += ["--threads", "1", "--size-mib", "32", "--trials", "1", "-f", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["results"]["read"]["1"] > 1e9 and data["size_bytes"] == 32 * 1024**2
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])
    from meltbench.measure.bandwidth import cached_bandwidth

    cached = cached_bandwidth(TARGET)
    assert cached is not None and cached.best("read", 1) == data["results"]["read"]["1"]


def _session_processes(venv: str) -> list[psutil.Process]:
    """The agent processes this test session started in its device venv."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith(venv + "/") and "meltbench.harness.agent" in cmd:
            found.append(p)
    return found


def _kill_leftovers(venv: str) -> None:
    """Stop the agents and workers of this session's venv that a test orphaned."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith(venv + "/") and any("meltbench.measure" in c for c in cmd):
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.mark.parametrize("what", ["connection", "agent", "hung"])
def test_disconnect_mid_run_keeps_completed_reps(targets_env, set_up_target, what, monkeypatch):
    """The connection drops (sshd's session processes killed), the agent is killed, or the
    device stops answering with the connection open (sshd stopped): a failed run with the
    cause and the completed repetitions, the fault noticed within ``FAULT_NOTICED_S``."""
    from meltbench.targets import remote_run

    monkeypatch.setattr(remote_run, "LIVENESS_INTERVAL_S", 1.0)
    monkeypatch.setattr(remote_run, "LIVENESS_TIMEOUT_S", 2.0)
    venv = str(targets_env.workdir / "venv")
    master = targets_env.proc.pid
    hit: list[psutil.Process] = []
    fault_at: list[float] = []
    agent_returned_at: list[float] = []
    run_agent = remote_run.run_agent

    def timed_run_agent(*args, **kwargs):
        try:
            return run_agent(*args, **kwargs)
        finally:
            agent_returned_at.append(time.monotonic())

    monkeypatch.setattr(remote_run, "run_agent", timed_run_agent)

    def on_event(event):
        if event.get("event") == "rep" and event.get("kind") == "timed" and not hit:
            agents = _session_processes(venv)
            assert len(agents) == 1, agents
            agent = agents[0]
            if what == "agent":
                victims = [agent]
            else:  # the sshd processes serving this connection
                victims = [
                    p for p in agent.parents() if p.name().startswith("sshd") and p.pid != master
                ]
            assert victims
            for p in victims:
                hit.append(p)
                p.send_signal(signal.SIGSTOP if what == "hung" else signal.SIGKILL)
            fault_at.append(time.monotonic())

    try:
        result = meltbench.run(target=TARGET, reps=8, on_event=on_event, **SMALL)
    finally:
        for p in hit:  # the stopped sshd processes of this test
            try:
                p.kill()
            except psutil.Error:
                pass
        _kill_leftovers(venv)
    assert hit
    assert result.status == "failed"
    if what == "connection":
        assert "target disconnected" in result.failure and "lost" in result.failure
    elif what == "hung":
        assert "target disconnected" in result.failure and "stopped answering" in result.failure
    else:
        assert "agent" in result.failure and "SIGKILL" in result.failure
    timed = [r for r in result.repetitions if r.kind == "timed"]
    assert 1 <= len(timed) < 8  # what completed is kept
    assert result.metrics["ttft_ms"].n == len(timed)
    # from the fault to the host giving the stream up (not the whole run: its start-up and
    # the result built afterwards take 50 to 70 s on a loaded 2-core machine)
    assert fault_at and agent_returned_at
    assert agent_returned_at[0] - fault_at[0] < FAULT_NOTICED_S


def test_model_named_like_an_injection_runs_nothing_else(
    targets_env, set_up_target, tmp_path, monkeypatch
):
    odd = tmp_path / "a b;rm -rf x.gguf"
    try:
        os.link(default_model(), odd)
    except OSError:
        shutil.copy(default_model(), odd)
    # canaries where an injected `rm -rf x.gguf` would run: the host's working directory
    # and the remote login directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.gguf").write_text("canary")
    with open_target(TARGET) as target:
        remote_cwd = target.run(["pwd"]).stdout.strip()
    remote_canary = Path(remote_cwd) / "x.gguf"
    created = not remote_canary.exists()
    if created:
        remote_canary.write_text("canary")
    events: list[dict] = []
    try:
        result = meltbench.run(
            target=TARGET, model=str(odd), n_prompt=16, n_gen=4, reps=1, on_event=events.append
        )
        assert result.ok, result.failure
        assert (tmp_path / "x.gguf").read_text() == "canary"
        assert remote_canary.exists()
    finally:
        if created:
            remote_canary.unlink(missing_ok=True)
    pushed = next(e for e in events if e.get("event") == "target" and e.get("phase") == "pushed")
    assert pushed["remote"].endswith("/a b;rm -rf x.gguf")
    assert Path(pushed["remote"]).is_file()
    assert pushed["action"] in ("linked", "pushed")


# -- devices and cleanup ---------------------------------------------------------------------


def test_devices_lists_capabilities(sshd, set_up_target, tmp_path):
    from meltbench.targets.devices import list_devices

    targets = sshd.write_targets(
        tmp_path / "targets.yaml", void={"url": "ssh://192.0.2.1", "connect_timeout_s": 2}
    )
    t0 = time.monotonic()
    devices = {d["name"]: d for d in list_devices(targets)}
    assert time.monotonic() - t0 < 30
    assert {"local", TARGET, "void"} <= set(devices)
    dev = devices[TARGET]
    assert dev["reachable"] and dev["set_up"] and dev["os"] == "Linux"
    assert dev["arch"] and dev["kernel"] and dev["memory_bytes"] > 0 and dev["python"]
    assert dev["engines"]["llama.cpp"]["available"] is True
    assert isinstance(dev["sensors"], list) and {"rapl", "thermal"} <= {
        s["sensor"] for s in dev["sensors"]
    }
    assert devices["void"]["reachable"] is False and "cannot reach" in devices["void"]["error"]


def test_cleanup_removes_the_workdir(sshd, tmp_path):
    from meltbench.targets.setup import cleanup_target

    workdir = tmp_path / "device" / "to clean"
    targets = sshd.write_targets(
        tmp_path / "targets.yaml",
        scratch={
            "url": sshd.url,
            "identity_file": str(sshd.user_key),
            "known_hosts": str(sshd.known_hosts),
            "workdir": str(workdir),
        },
    )
    with open_target("scratch", targets) as target:
        src = tmp_path / "f"
        src.write_text("x")
        target.push(str(src), posixpath.join(target.workdir, "models", "f"))
    assert (workdir / "models" / "f").is_file()
    out = cleanup_target("scratch", targets_file=targets)
    assert out["removed"] == str(workdir) and not workdir.exists()
    assert (tmp_path / "device").is_dir()  # only meltbench's directory went
