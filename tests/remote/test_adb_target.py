"""The adb target against a fake adb server on loopback (no phone exists here).

adbutils and meltbench's code run for real, end to end: the fake speaks adb's host
protocol (``fake_adb_server.py``), runs shell commands in a sandbox "phone" (a fake sysfs
tree, stand-in getprop/dumpsys printing hand-written outputs, a stand-in llama-bench
printing a RECORDED REAL llama-bench JSON). See ``tests/fixtures/android/README.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest

from meltbench import api
from meltbench.config import RunSpec
from meltbench.engines.base import EngineSettings
from meltbench.errors import UsageError
from meltbench.measure.stats import summarize
from meltbench.models.resolve import resolve_model
from meltbench.sensors.battery import BatterySensor
from meltbench.sensors.cpufreq import CpuFreqSensor
from meltbench.sensors.device_state import read_device_state
from meltbench.sensors.thermal import ThermalZoneSensor
from meltbench.targets.adb import AdbTarget, parse_adb_url
from meltbench.targets.adb_fs import AdbSysFS
from meltbench.targets.android import execute_android
from meltbench.targets.base import TargetError
from meltbench.targets.llama_bench import (
    parse_bench_json,
    parse_bench_jsonl,
    parse_dumpsys_battery,
    parse_getprop,
    parse_perf_lines,
    parse_power_state,
    parse_thermal_status,
)
from meltbench.targets.llama_bench_binary import llama_bench_argv
from tests.helpers import write_tiny_gguf
from tests.remote.adb_fixtures import (
    ANDROID,
    RECORDED_JSON,
    RECORDED_JSONL,
    RECORDED_PERF,
    SERIAL,
    STANDIN,
    make_phone,
)
from tests.remote.fake_adb_server import FakeAdbServer

WORKDIR = "/data/local/tmp/meltbench"
NDK_HINT = (
    "build llama-bench for arm64-v8a with the Android NDK (see README) and pass -o llama_bench=PATH"
)

# exact values of the recorded llama-bench run (recorded/llama-bench-pp64-tg16-r3.json)
PP_SAMPLES_TS = (601.746, 607.601, 615.094)
TG_SAMPLES_TS = (48.2817, 48.1634, 47.4402)
PP_SAMPLES_NS = (106357150, 105332297, 104049139)
TG_SAMPLES_NS = (331388541, 332202268, 337266691)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def phone(tmp_path: Path) -> Path:
    return make_phone(tmp_path / "phone")


@pytest.fixture
def fake(phone: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAdbServer]:
    server = FakeAdbServer(phone, SERIAL).start()
    monkeypatch.setenv("ANDROID_ADB_SERVER_HOST", "127.0.0.1")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    monkeypatch.delenv("MELTBENCH_ANDROID_LLAMA_BENCH", raising=False)
    yield server
    server.stop()


@pytest.fixture
def target(fake: FakeAdbServer) -> AdbTarget:
    return AdbTarget(f"adb://{SERIAL}", io_timeout=5.0)


def _prepared(model: Path, tmp_path: Path, **spec_options: object) -> api.PreparedRun:
    """A PreparedRun for the adb target without prepare()'s host-side engine check (the
    host needs no llama-cpp-python for an adb run)."""
    options: dict[str, object] = {
        "target": f"adb://{SERIAL}",
        "model": str(model),
        "n_prompt": 64,
        "n_gen": 16,
        "reps": 3,
        "idle_s": 0.2,
        "sensor_hz": 20,
        "engine_options": {"llama_bench": str(STANDIN)},
    }
    options.update(spec_options)
    spec: RunSpec = api.build_spec(**options)
    settings = EngineSettings(
        threads=spec.engine.threads or 4,
        n_ctx=spec.n_ctx,
        batch=spec.engine.batch,
        ubatch=spec.engine.ubatch or spec.engine.batch,
        options=dict(spec.engine.options),
    )
    return api.PreparedRun(
        spec=spec,
        engine="llama.cpp",
        model=resolve_model(str(model), formats=("gguf",)),
        settings=settings,
    )


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    return write_tiny_gguf(tmp_path / "models" / "tiny.gguf")


# -- adbutils itself against the fake -----------------------------------------------


def test_adbutils_talks_to_the_fake_server(fake: FakeAdbServer, phone: Path) -> None:
    client = adbutils.AdbClient("127.0.0.1", fake.port, socket_timeout=5)
    assert client.server_version() == 41
    assert [(d.serial, d.state) for d in client.list()] == [(SERIAL, "device")]
    (info,) = client.list(extended=True)
    assert info.tags["model"] == "Pixel_7"
    device = client.device(SERIAL)
    # shell v1: stdout and stderr merged, paths under /sys mapped into the sandbox
    out = device.shell("cat /sys/class/power_supply/battery/capacity; echo oops >&2")
    assert out == "78\noops"
    # shell v2 (adbutils asks for the features first): separate streams and exit status
    done = device.shell2("getprop ro.product.model; echo e >&2; false", v2=True)
    assert (done.returncode, done.stdout, done.stderr) == (1, "Pixel 7\n", "e\n")
    # sync: push and pull back a binary file byte for byte
    payload = bytes(range(256)) * 777 + os.urandom(4099)
    device.sync.push(payload, f"{WORKDIR}/blob.bin", mode=0o640)
    assert (phone / "data/local/tmp/meltbench/blob.bin").read_bytes() == payload
    assert device.sync.read_bytes(f"{WORKDIR}/blob.bin") == payload
    st = device.sync.stat(f"{WORKDIR}/blob.bin")
    assert (st.size, st.mode & 0o777) == (len(payload), 0o640)
    assert [f.path for f in device.sync.list(WORKDIR)] == ["blob.bin"]
    assert device.sync.stat("/data/local/tmp/absent").mode == 0
    assert "host:tport:serial:FAKE0001" in fake.requests  # adb >= 1.0.41 transport


def test_fake_rewrites_only_phone_paths(fake: FakeAdbServer, phone: Path) -> None:
    line = "cat /sys/a '/data/local/tmp/a b;rm -rf x' /system/bin/sh /sysfoo X=/proc/1"
    assert fake.rewrite(line) == (
        f"cat {phone}/sys/a '{phone}/data/local/tmp/a b;rm -rf x' /system/bin/sh "
        f"/sysfoo X={phone}/proc/1"
    )


# -- the target ----------------------------------------------------------------------


def test_run_streams_status_stdin_and_timeout(target: AdbTarget) -> None:
    assert parse_adb_url("adb://R58M123") == "R58M123"
    with pytest.raises(ValueError):
        parse_adb_url("adb://x;reboot")
    assert target.check_online()["state"] == "device"
    done = target.run(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (done.returncode, done.stdout, done.stderr) == (4, "out", "err")
    assert target.run(["cat"], input="via stdin\n").stdout == "via stdin"
    proc = target.start(["sh", "-c", "echo one; echo two"])
    assert list(proc.lines()) == ["one", "two"]
    assert proc.wait(5) == 0
    t0 = time.monotonic()
    slow = target.start(["sleep", "30"])
    with pytest.raises(TargetError, match="timed out"):
        slow.wait(0.5)
    slow.kill()
    assert time.monotonic() - t0 < 5
    assert slow.pid is not None
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # killed on the "phone" (this host)
        os.kill(slow.pid, 0)


def test_push_pull_checksum_and_workdir(target: AdbTarget, phone: Path, tmp_path: Path) -> None:
    local = tmp_path / "weights.bin"
    local.write_bytes(os.urandom(70000))
    assert target.push_checked(str(local), f"{WORKDIR}/sub/weights.bin") is True
    assert (phone / "data/local/tmp/meltbench/sub/weights.bin").read_bytes() == local.read_bytes()
    assert target.push_checked(str(local), f"{WORKDIR}/sub/weights.bin") is False  # same sha
    back = tmp_path / "back.bin"
    target.pull(f"{WORKDIR}/sub/weights.bin", str(back))
    assert back.read_bytes() == local.read_bytes()
    with pytest.raises(ValueError, match="only under"):
        target.push(str(local), "/data/local/tmp/elsewhere.bin")
    with pytest.raises(ValueError, match="only under"):
        target.push(str(local), f"{WORKDIR}/../escape.bin")
    with pytest.raises(TargetError, match="does not exist"):
        target.pull(f"{WORKDIR}/none", str(back))
    target.cleanup()
    assert not (phone / "data/local/tmp/meltbench").exists()
    assert (phone / "data/local/tmp").is_dir()


def test_device_states_and_no_server(fake: FakeAdbServer, target: AdbTarget) -> None:
    fake.state = "unauthorized"
    with pytest.raises(TargetError, match="unauthorized: unlock the phone"):
        target.check_online()
    fake.state = "device"
    with pytest.raises(TargetError, match="'OTHER' is not attached"):
        AdbTarget("adb://OTHER").check_online()
    assert AdbTarget("adb://").check_online()["serial"] == SERIAL
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(TargetError, match=r"no adb server at 127\.0\.0\.1:.*adb start-server"):
        AdbTarget("adb://X", port=free).check_online()  # and no local adb is spawned
    assert time.monotonic() - t0 < 5


# -- sensors through adb -------------------------------------------------------------


def test_existing_sensors_read_the_phone_through_adb(target: AdbTarget, phone: Path) -> None:
    fs = AdbSysFS(target)
    assert fs.read_text("sys/class/power_supply/battery/status") == "Discharging"
    assert fs.read_int("sys/class/power_supply/battery/current_now") == -412000
    assert fs.read_text("sys/class/power_supply/nothing") is None
    assert fs.listdir("sys/class/power_supply") == ["ac", "battery", "usb", "wireless"]
    assert fs.listdir("sys/class/none") == []
    assert fs.listdir("sys/class/power_supply/battery/type") == []  # a file
    assert fs.exists("sys/class/thermal") and not fs.exists("sys/class/none")

    battery, thermal, cpufreq = BatterySensor(fs), ThermalZoneSensor(fs), CpuFreqSensor(fs)
    pb, pt, pc = battery.probe(), thermal.probe(), cpufreq.probe()
    assert pb.available and pb.details["method"] == "current_now*voltage_now"
    assert (pb.details["current_unit"], pb.details["voltage_unit"]) == ("uA", "uV")
    assert pb.details["sign_convention"] == "discharge_negative"
    assert pb.details["charging"] is False
    assert [c.name for c in pt.channels] == [
        "thermal:BIG",
        "thermal:MID",
        "thermal:LITTLE",
        "thermal:G3D",
        "thermal:battery",
    ]
    assert pt.details["zones"]["thermal:battery"]["scale"] == "deci-C"
    assert pt.details["skipped"] == {"thermal_zone5": "usb_pwr_therm: mode disabled"}
    assert [c.name for c in pc.channels] == [
        "cpufreq:policy0",
        "cpufreq:policy4",
        "cpufreq:policy6",
    ]
    before = fs.commands
    assert battery.read() == [pytest.approx(0.412 * 3.987, abs=1e-12)]
    assert thermal.read() == [52.3, 47.1, 44.8, 41.5, 29.1]
    assert cpufreq.read() == [1197.0, 1704.0, 2253.0]
    assert fs.commands - before == 1  # one batched shell command for the whole row
    # the next row re-reads: a changed value is seen
    (phone / "sys/class/power_supply/battery/current_now").write_text("-500000\n")
    (phone / "sys/class/thermal/thermal_zone0/temp").write_text("61000\n")
    assert battery.read() == [pytest.approx(0.5 * 3.987, abs=1e-12)]
    assert thermal.read()[0] == 61.0
    for sensor in (battery, thermal, cpufreq):
        sensor.close()

    state = read_device_state(fs)
    assert state["battery_level_pct"] == 78
    assert state["charging"] is False
    assert state["power_source"] == "battery"
    assert state["governor"] == "schedutil"
    assert state["governors"] == {
        "policy0": "schedutil",
        "policy4": "schedutil",
        "policy6": "schedutil",
    }


def test_sysfs_errors_map_to_oserrors() -> None:
    assert AdbSysFS._error("/x", "cat: /x: No such file or directory") is None
    assert isinstance(AdbSysFS._error("/x", "cat: /x: Permission denied"), PermissionError)
    assert isinstance(AdbSysFS._error("/x", "cat: /x: Is a directory"), IsADirectoryError)
    assert isinstance(AdbSysFS._error("/x", "cat: /x: Invalid argument"), OSError)


# -- parsers on recorded outputs -----------------------------------------------------


def test_llama_bench_json_recorded() -> None:
    records, complete = parse_bench_json(RECORDED_JSON.read_text())
    assert complete
    pp, tg = records
    assert (pp.kind, pp.label, tg.kind, tg.label) == ("pp", "pp64", "tg", "tg16")
    assert (pp.n_prompt, pp.n_gen, tg.n_prompt, tg.n_gen) == (64, 0, 0, 16)
    assert pp.samples_ts == PP_SAMPLES_TS and tg.samples_ts == TG_SAMPLES_TS
    assert pp.samples_ns == PP_SAMPLES_NS and tg.samples_ns == TG_SAMPLES_NS
    assert (pp.avg_ns, pp.stddev_ns, pp.avg_ts, pp.stddev_ts) == (
        105246195,
        1156457,
        608.147001,
        6.690681,
    )
    assert (tg.avg_ts, tg.stddev_ts) == (47.961775, 0.455549)
    assert pp.model_type == "gemma3 270M Q4_K - Medium"
    assert (pp.model_size, pp.model_n_params) == (246587904, 268098176)
    assert (pp.n_threads, pp.n_batch, pp.n_ubatch) == (2, 2048, 512)
    assert (pp.build_commit, pp.build_number) == ("0c1e570", 1)
    assert pp.cpu_info == "Intel(R) Xeon(R) Processor"
    assert pp.backends == "CPU"
    # llama-bench's avg_ts is the mean of samples_ts
    assert summarize(pp.samples_ts).mean == pytest.approx(pp.avg_ts, abs=1e-3)
    # the -o jsonl recording (a second run of the same command)
    pp_l, tg_l = parse_bench_jsonl(RECORDED_JSONL.read_text())
    assert (pp_l.label, pp_l.samples_ts, pp_l.avg_ts) == (
        "pp64",
        (579.461, 580.252, 523.008),
        560.906919,
    )
    assert (tg_l.label, tg_l.samples_ns) == ("tg16", (337622500, 336412207, 337345960))


def test_llama_bench_json_cut_short_keeps_finished_tests() -> None:
    text = RECORDED_JSON.read_text()
    cut = text[: text.index('"n_prompt": 0')]  # inside the second (tg) object
    records, complete = parse_bench_json(cut)
    assert not complete
    assert [r.label for r in records] == ["pp64"]
    assert parse_bench_json("main: error: failed to load model")[0] == []
    with pytest.raises(ValueError):
        parse_bench_json('[{"n_prompt": 1}]')
    lines = RECORDED_JSONL.read_text().splitlines()
    assert len(parse_bench_jsonl(lines[0] + "\n" + lines[1][:40])) == 1


def test_perf_lines_recorded() -> None:
    perf = parse_perf_lines(RECORDED_PERF.read_text())
    assert perf["load"]["ms"] == 32.16
    assert perf["prompt_eval"] == {
        "ms": 32.01,
        "count": 6,
        "unit": "tokens",
        "ms_per_token": 5.33,
        "tokens_per_s": 187.46,
    }
    assert perf["eval"] == {
        "ms": 332.60,
        "count": 15,
        "unit": "runs",
        "ms_per_token": 22.17,
        "tokens_per_s": 45.10,
    }
    assert (perf["total"]["ms"], perf["total"]["count"]) == (381.94, 21)
    # llama-server's print_timings (tools/server/server-context.cpp format)
    server = (
        "slot print_timings: id  0 | task 0 | prompt eval time =      12.50 ms /    64 tokens "
        "(    0.20 ms per token,  5120.00 tokens per second)\n"
        "slot print_timings: id  0 | task 0 |        eval time =     200.00 ms /    16 tokens "
        "(   12.50 ms per token,    80.00 tokens per second)\n"
    )
    timings = parse_perf_lines(server)
    assert timings["prompt_eval"]["tokens_per_s"] == 5120.0
    assert (timings["eval"]["count"], timings["eval"]["unit"]) == (16, "tokens")


def test_android_text_parsers() -> None:
    props = parse_getprop((ANDROID / "getprop.txt").read_text())
    assert props["ro.product.model"] == "Pixel 7"
    assert props["ro.product.cpu.abi"] == "arm64-v8a"
    dumpsys = ANDROID / "dumpsys"
    bat = parse_dumpsys_battery((dumpsys / "battery.txt").read_text())
    assert (bat["level_pct"], bat["status"], bat["charging"], bat["plugged"]) == (
        78,
        "Discharging",
        False,
        False,
    )
    assert (bat["voltage_mv"], bat["temperature_c"], bat["updates_stopped"]) == (3987, 29.1, False)
    charging = parse_dumpsys_battery((dumpsys / "battery_charging.txt").read_text())
    assert (charging["status"], charging["usb_powered"], charging["charging"]) == (
        "Charging",
        True,
        True,
    )
    assert parse_dumpsys_battery((dumpsys / "battery_unplugged.txt").read_text())["updates_stopped"]
    assert parse_thermal_status((dumpsys / "thermalservice.txt").read_text()) == {
        "status": 0,
        "name": "none",
    }
    assert parse_thermal_status((dumpsys / "thermalservice_moderate.txt").read_text()) == {
        "status": 2,
        "name": "moderate",
    }
    assert parse_thermal_status("") == {"status": None, "name": None}
    assert parse_power_state((dumpsys / "power.txt").read_text()) == {
        "wakefulness": "Awake",
        "display_state": "ON",
        "screen_on": True,
    }
    assert parse_power_state((dumpsys / "power_screen_off.txt").read_text())["screen_on"] is False
    assert parse_power_state("  mWakefulness=Dozing\n")["screen_on"] is False


# -- execute_android end to end ------------------------------------------------------


def test_execute_android_end_to_end(
    fake: FakeAdbServer, phone: Path, tiny_model: Path, tmp_path: Path
) -> None:
    prepared = _prepared(tiny_model, tmp_path)
    events: list[dict[str, object]] = []
    result, interrupted = api.execute(prepared, events.append)  # dispatches on adb://
    assert not interrupted
    assert result.status == "ok", result.failure
    assert result.test == "pp64+tg16"
    assert result.target == f"adb://{SERIAL}"
    assert result.metrics["prefill_tps"] == summarize(PP_SAMPLES_TS)
    assert result.metrics["decode_tps"] == summarize(TG_SAMPLES_TS)
    for absent in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "load_ms"):
        assert absent not in result.metrics
    assert result.repetitions == []
    codes = [w["code"] for w in result.warnings]
    assert "not_measured" in codes and "charging" not in codes

    state = result.device_state
    assert state["battery_level_pct"] == 78
    assert state["charging"] is False
    assert state["screen_on"] is True and state["screen_state"] == "ON"
    assert (state["thermal_status"], state["thermal_status_name"]) == (0, "none")
    assert state["governor"] == "schedutil"
    assert state["battery_temp_c"] == 29.1

    env = result.environment
    assert (env["model"], env["android_version"], env["soc_model"], env["abi"]) == (
        "Pixel 7",
        "14",
        "GS201",
        "arm64-v8a",
    )
    eng = result.engine
    assert eng["name"] == "llama.cpp (llama-bench)"
    assert (eng["build_commit"], eng["cpu_info"]) == ("0c1e570", "Intel(R) Xeon(R) Processor")
    assert [t["test"] for t in eng["tests"]] == ["pp64", "tg16"]
    assert eng["pushed"] == {"llama-bench": True, "model": True}
    assert result.settings["threads"] == 2  # what llama-bench used (no -t given)

    sensors = result.sensors
    assert sensors["available"] == ["battery", "thermal", "cpufreq"]
    names = [c["name"] for c in sensors["series"]["channels"]]
    assert names[0] == "battery:battery" and "cpufreq:policy6" in names
    assert len(sensors["series"]["t_ns"]) >= 2
    assert sensors["idle"]["power_w"] == pytest.approx(1.642644)
    assert result.metrics["temp_max_c"].max == 52.3
    assert "host" in sensors["clock"]

    work = phone / "data/local/tmp/meltbench"
    assert (work / "tiny.gguf").read_bytes() == tiny_model.read_bytes()
    assert os.access(work / "llama-bench", os.X_OK)
    argv = (phone / "meltbench-fake/llama-bench.argv").read_text().splitlines()
    assert argv == [
        "-m",
        f"{work}/tiny.gguf",
        "-p",
        "64",
        "-n",
        "16",
        "-r",
        "3",
        "-b",
        "512",
        "-ub",
        "512",
        "-o",
        "json",
    ]
    assert [e["event"] for e in events][:2] == ["hello", "phase"]
    assert [e["test"] for e in events if e["event"] == "test"] == ["pp64", "tg16"]

    # the result is valid and storable
    from meltbench.results.schema import RunResult
    from meltbench.results.store import ResultStore

    again = RunResult.model_validate(json.loads(json.dumps(result.to_json_dict())))
    assert again.metrics["decode_tps"].samples == TG_SAMPLES_TS
    store = ResultStore(tmp_path / "runs.db")
    try:
        store.save(result)
    finally:
        store.close()

    # a second run finds both files by checksum and does not push them again
    second, _ = execute_android(_prepared(tiny_model, tmp_path, idle_s=0))
    assert second.ok and second.engine["pushed"] == {"llama-bench": False, "model": False}


def test_charging_phone_warns(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    phone = make_phone(tmp_path / "charging-phone", charging=True)
    with FakeAdbServer(phone, SERIAL) as server:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
        result, _ = execute_android(_prepared(tiny_model, tmp_path))
    assert result.ok
    assert result.device_state["charging"] is True
    assert result.device_state["power_source"] == "usb"
    assert result.device_state["plugged"] is True
    charging = [w for w in result.warnings if w["code"] == "charging"]
    assert len(charging) == 1 and "charging" in (charging[0]["message"] or "")
    assert result.sensors["energy_valid"] is False
    assert "avg_power_w_run" not in result.sensors


def test_disconnect_mid_run_fails_with_cause(
    fake: FakeAdbServer, phone: Path, tiny_model: Path, tmp_path: Path
) -> None:
    (phone / "meltbench-fake" / "hang").touch()  # the stand-in stops after the pp test

    def pull_the_cable() -> None:
        deadline = time.monotonic() + 20
        argv = phone / "meltbench-fake" / "llama-bench.argv"
        while not argv.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        fake.disconnect()

    threading.Thread(target=pull_the_cable, daemon=True).start()
    t0 = time.monotonic()
    result, interrupted = execute_android(_prepared(tiny_model, tmp_path, idle_s=0))
    elapsed = time.monotonic() - t0
    assert elapsed < 20
    assert not interrupted
    assert result.status == "failed"
    assert result.failure is not None and result.failure.startswith(
        "device disconnected: the adb connection closed before llama-bench exited"
    )
    # nothing measured is lost: the pp test printed before the disconnect is kept
    assert result.metrics["prefill_tps"] == summarize(PP_SAMPLES_TS)
    assert "decode_tps" not in result.metrics
    assert [t["test"] for t in result.engine["tests"]] == ["pp64"]
    # and the device is gone for the next run: a usage error, before measuring
    with pytest.raises(UsageError, match="not attached"):
        execute_android(_prepared(tiny_model, tmp_path, idle_s=0))


def test_timeout_kills_llama_bench(
    fake: FakeAdbServer, phone: Path, tiny_model: Path, tmp_path: Path
) -> None:
    (phone / "meltbench-fake" / "hang").touch()
    t0 = time.monotonic()
    result, _ = execute_android(_prepared(tiny_model, tmp_path, idle_s=0, timeout_s=1.5))
    assert time.monotonic() - t0 < 15
    assert result.status == "failed"
    assert result.failure is not None and result.failure.startswith("timed out after 1.5 s")
    assert result.metrics["prefill_tps"] == summarize(PP_SAMPLES_TS)


def test_model_name_cannot_inject_commands(
    fake: FakeAdbServer, phone: Path, tmp_path: Path
) -> None:
    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    model = write_tiny_gguf(evil_dir / "a b;rm -rf x.gguf")
    work = phone / "data/local/tmp/meltbench"
    work.mkdir(parents=True)
    canaries = [phone / "x.gguf", work / "x.gguf", phone / "x"]
    for canary in canaries:
        canary.write_text("canary\n")
    result, _ = execute_android(_prepared(model, tmp_path, idle_s=0))
    assert result.ok, result.failure
    assert all(c.read_text() == "canary\n" for c in canaries)
    assert (work / "a b;rm -rf x.gguf").read_bytes() == model.read_bytes()
    argv = (phone / "meltbench-fake" / "llama-bench.argv").read_text().splitlines()
    assert argv[:2] == ["-m", f"{work}/a b;rm -rf x.gguf"]
    assert result.engine["argv"][2] == f"{WORKDIR}/a b;rm -rf x.gguf"
    # cleanup removes meltbench's directory only
    AdbTarget(f"adb://{SERIAL}").cleanup()
    assert not work.exists()
    assert (phone / "x.gguf").exists() and (phone / "data/local/tmp").is_dir()


def test_missing_or_wrong_llama_bench_is_a_usage_error(
    fake: FakeAdbServer, tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    prepared = _prepared(tiny_model, tmp_path, engine_options={})
    with pytest.raises(UsageError) as err:
        execute_android(prepared)
    assert NDK_HINT in str(err.value)
    monkeypatch.setenv("MELTBENCH_ANDROID_LLAMA_BENCH", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="is not a file"):
        execute_android(prepared)
    host_binary = tmp_path / "llama-bench-x86"
    shutil.copy("/bin/true", host_binary)  # an x86_64 ELF: not for an arm64 phone
    monkeypatch.setenv("MELTBENCH_ANDROID_LLAMA_BENCH", str(host_binary))
    with pytest.raises(UsageError, match=r"built for x86_64.*ANDROID_ABI=arm64-v8a"):
        execute_android(prepared)


def test_argv_options(tiny_model: Path, tmp_path: Path) -> None:
    spec = _prepared(
        tiny_model,
        tmp_path,
        threads=4,
        n_depth=128,
        warmup=0,
        engine_options={"llama_bench": str(STANDIN), "flash_attn": True, "use_mmap": False},
    ).spec
    argv = llama_bench_argv(spec, "/w/llama-bench", "/w/m.gguf")
    assert argv[:6] == ["/w/llama-bench", "-m", "/w/m.gguf", "-p", "64", "-n"]
    tail = argv[argv.index("json") + 1 :]
    assert tail == ["-t", "4", "-d", "128", "--no-warmup", "-fa", "1", "-mmp", "0"]


def test_shell_v2_packet_survives_a_read_timeout() -> None:
    from meltbench.targets.adb_process import _ShellV2

    class _Wrapped:  # what adbutils' AdbConnection exposes: .conn is the socket
        def __init__(self, sock: socket.socket) -> None:
            self.conn = sock

        def close(self) -> None:
            self.conn.close()

    ours, theirs = socket.socketpair()
    ours.settimeout(0.1)
    shell = _ShellV2(_Wrapped(ours))  # type: ignore[arg-type]
    packet = bytes([1]) + (6).to_bytes(4, "little") + b"hello\n"
    theirs.sendall(packet[:3])
    with pytest.raises(TimeoutError):
        shell.read_packet()
    theirs.sendall(packet[3:8])
    with pytest.raises(TimeoutError):
        shell.read_packet()
    theirs.sendall(packet[8:] + bytes([3]) + (1).to_bytes(4, "little") + b"\x00")
    assert shell.read_packet() == (1, b"hello\n")
    assert shell.read_packet() == (3, b"\x00")
    theirs.close()
    assert shell.read_packet() is None
    shell.close()
