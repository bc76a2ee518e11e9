"""A benchmark run on an Android phone over adb: llama-bench on the phone, sensors through adb.

:func:`execute_android` is what :func:`meltbench.api.execute` calls for a spec whose
target is ``adb://SERIAL``. Steps:

1. connect to the adb server (``ANDROID_ADB_SERVER_HOST``/``PORT``, default
   ``127.0.0.1:5037``) and check the device is attached and authorized
   (:class:`~meltbench.errors.UsageError` otherwise: nothing is measured or stored);
2. read ``getprop`` (model, Android version, SoC, ABI) and the device state *before the
   run*: battery level, charging, power source and governors from sysfs
   (:func:`~meltbench.sensors.device_state.read_device_state` over
   :class:`~meltbench.targets.adb_fs.AdbSysFS`), plus ``dumpsys battery`` (charger, level,
   battery temperature), ``dumpsys power`` (screen state) and ``dumpsys thermalservice``
   (thermal status 0-6); a charging phone gets the typed warning ``charging``;
3. push ``llama-bench`` (``-o llama_bench=PATH`` or ``MELTBENCH_ANDROID_LLAMA_BENCH``)
   and the GGUF model to ``/data/local/tmp/meltbench/`` (SHA-256 compared first: a file
   already there is not pushed again), ``chmod 755`` the binary;
4. probe the battery, thermal and cpufreq sensors through adb, sample the idle baseline,
   then run ``llama-bench -m MODEL -p N -n N -r REPS -o json [-t T] ...`` over
   ``adb shell`` (argument list quoted, deadline ``timeout_s``) while the sensors are
   sampled;
5. parse llama-bench's JSON into a :class:`~meltbench.results.schema.RunResult`.

**What is timed where.** Throughput is llama-bench's own measurement *on the phone*:
each repetition of the ``pp`` test (prompt processing, ``n_gen = 0``) and of the ``tg``
test (generation of ``n_gen`` tokens from an empty context, or from ``n_depth``) is timed
by llama-bench around its ``llama_decode`` calls; its ``samples_ts`` (one tok/s value per
repetition) become ``prefill_tps`` and ``decode_tps``, summarized like every other metric.
llama-bench runs pp and tg as *separate* tests, so the label ``pp{n}+tg{n}`` names the
pair, not one request. llama-bench reports no per-token timestamps, so ``ttft_ms``,
``itl_ms``, ``tpot_ms``, ``e2e_ms`` and the per-window energies are **not measured**
(absent, and said so in a ``not_measured`` warning), never estimated. Sensors are read
by the *host* through adb (one batched ``cat`` per row): their timestamps are on the host's
``perf_counter_ns`` clock, each row stamped at the middle of its adb round trip (a few ms to
tens of ms over USB); the series covers the llama-bench process (model load included).

**Faults.** A device that disappears (cable pulled, adbd restarted) ends the run as
``failed`` with cause ``device disconnected: ...``; the tests llama-bench had already
printed are kept. Every adb exchange has a timeout, and the run a deadline (``timeout_s``,
default one hour).

**Building llama-bench for the phone** (llama.cpp's ``docs/android.md``, plus a static
build so that one file is enough)::

    cmake -B build-android \\
      -DCMAKE_TOOLCHAIN_FILE=$ANDROID_NDK/build/cmake/android.toolchain.cmake \\
      -DANDROID_ABI=arm64-v8a -DANDROID_PLATFORM=android-28 \\
      -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_LLAMAFILE=OFF \\
      -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF
    cmake --build build-android --config Release --target llama-bench -j
    meltbench run --target adb://SERIAL -o llama_bench=build-android/bin/llama-bench

The binary's ELF machine is checked against ``ro.product.cpu.abilist`` before anything is
pushed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.measure.stats import summarize
from meltbench.measure.warnings import CV_THRESHOLD, BenchWarning
from meltbench.results.assemble import model_facts, new_result
from meltbench.results.schema import RunResult
from meltbench.sensors.base import Probe, Sensor
from meltbench.targets.adb import AdbTarget, android_environment
from meltbench.targets.adb_fs import AdbSysFS
from meltbench.targets.base import TargetError
from meltbench.targets.llama_bench import (
    BenchRecord,
    parse_bench_json,
    parse_dumpsys_battery,
    parse_power_state,
    parse_thermal_status,
)
from meltbench.targets.llama_bench_binary import (
    elf_abi,
    llama_bench_argv,
    llama_bench_path,
)
from meltbench.timestamps import utc_now

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ENGINE_NAME",
    "execute_android",
    "read_android_state",
]

#: deadline of the llama-bench process when the spec sets no ``timeout_s``, seconds
DEFAULT_TIMEOUT_S = 3600.0
ENGINE_NAME = "llama.cpp (llama-bench)"
#: sensors that can be read through adb
ADB_SENSORS = ("battery", "thermal", "cpufreq")


EventCallback = Callable[[dict[str, Any]], None]


def read_android_state(target: AdbTarget, fs: AdbSysFS) -> dict[str, Any]:
    """The phone's state before a run; never raises for an unreadable part (a ``notes``
    entry says what could not be read).

    Returns:
        :func:`~meltbench.sensors.device_state.read_device_state`'s keys, with
        ``battery_level_pct``/``charging`` completed from ``dumpsys battery`` where sysfs
        hides them, plus ``screen_on``, ``screen_state`` (``Display Power: state=``),
        ``wakefulness``, ``thermal_status`` (0-6) and ``thermal_status_name``,
        ``battery_temp_c``, ``plugged`` and the parsed ``dumpsys`` outputs under
        ``android``. ``charging`` is True if sysfs *or* ``dumpsys battery`` says so, except
        that ``dumpsys`` values set by hand (``dumpsys battery unplug``: "UPDATES
        STOPPED") are not trusted.
    """
    from meltbench.sensors.device_state import read_device_state

    state = read_device_state(fs)
    notes: list[str] = state.setdefault("notes", [])
    dumps: dict[str, str] = {}
    for service in ("battery", "power", "thermalservice"):
        try:
            done = target.run(["dumpsys", service], timeout=30)
        except TargetError as exc:
            notes.append(f"dumpsys {service} failed: {exc}")
            continue
        if done.ok:
            dumps[service] = done.stdout
        else:
            notes.append(f"dumpsys {service} exited {done.returncode}: {done.stderr.strip()}")
    battery = parse_dumpsys_battery(dumps["battery"]) if "battery" in dumps else {}
    power = parse_power_state(dumps["power"]) if "power" in dumps else {}
    thermal = parse_thermal_status(dumps["thermalservice"]) if "thermalservice" in dumps else {}

    trusted = bool(battery) and not battery.get("updates_stopped")
    if battery.get("updates_stopped"):
        notes.append(
            "dumpsys battery shows values set by hand (UPDATES STOPPED, e.g. after "
            "`dumpsys battery unplug`): charging is taken from sysfs"
        )
    if state.get("battery_level_pct") is None and battery.get("level_pct") is not None:
        state["battery_level_pct"] = battery["level_pct"]
    if trusted and battery.get("charging") is not None:
        if state.get("charging") is None:
            state["charging"] = battery["charging"]
        elif battery["charging"] and not state["charging"]:
            state["charging"] = True
            notes.append("sysfs says not charging but dumpsys battery says charging")
    state["plugged"] = battery.get("plugged") if trusted else None
    state["battery_temp_c"] = battery.get("temperature_c")
    state["screen_on"] = power.get("screen_on")
    state["screen_state"] = power.get("display_state")
    state["wakefulness"] = power.get("wakefulness")
    state["thermal_status"] = thermal.get("status")
    state["thermal_status_name"] = thermal.get("name")
    state["android"] = {"battery": battery, "power": power, "thermal": thermal}
    return state


def _sensors(spec: Any, fs: AdbSysFS) -> list[tuple[Sensor | None, Probe]]:
    """Probe the adb-readable sensors the spec asks for (never raises)."""
    from meltbench.sensors.battery import BatterySensor
    from meltbench.sensors.cpufreq import CpuFreqSensor
    from meltbench.sensors.thermal import ThermalZoneSensor

    classes: dict[str, type[Sensor]] = {
        "battery": BatterySensor,
        "thermal": ThermalZoneSensor,
        "cpufreq": CpuFreqSensor,
    }
    use = spec.sensors.use
    if use is None:
        names = list(ADB_SENSORS)
    elif "none" in use:
        names = []
    else:
        names = list(use)
    probed: list[tuple[Sensor | None, Probe]] = []
    for name in names:
        cls = classes.get(name)
        if cls is None:
            probed.append(
                (None, Probe(name, False, f"not readable through adb (adb reads: {ADB_SENSORS})"))
            )
            continue
        sensor = cls(fs)
        probed.append((sensor, sensor.probe()))
    return probed


class _AndroidRun:
    """The state of one Android run while it is measured."""

    def __init__(self, prepared: Any, target: AdbTarget, on_event: EventCallback | None) -> None:
        self.prepared = prepared
        self.spec = prepared.spec
        self.target = target
        self.emit = on_event or (lambda event: None)
        self.failure: str | None = None
        self.interrupted = False
        self.warnings: list[BenchWarning] = []
        self.environment: dict[str, Any] = {}
        self.device_state: dict[str, Any] = {}
        self.engine: dict[str, Any] = {"name": ENGINE_NAME}
        self.records: list[BenchRecord] = []
        self.argv: list[str] = []
        self.probed: list[tuple[Sensor | None, Probe]] = []
        self.series: Any = None
        self.baseline: Any = None
        self.sampler: Any = None
        self.stderr_tail: list[str] = []

    def fail(self, cause: str) -> None:
        if self.failure is None:
            self.failure = cause

    # -- steps -------------------------------------------------------------------

    def inspect(self, bench: Path) -> AdbSysFS:
        """getprop, ABI check, device state, warnings."""
        tgt = self.target
        props = tgt.getprop()
        self.environment = {
            **android_environment(props),
            "serial": tgt.serial,
            "adb_server": f"{tgt.host}:{tgt.port}",
            "target": self.spec.target,
        }
        abi = elf_abi(bench)
        phone_abis = props.get("ro.product.cpu.abilist") or props.get("ro.product.cpu.abi") or ""
        if abi and phone_abis and abi not in phone_abis.split(","):
            raise UsageError(
                f"llama-bench {str(bench)!r} is built for {abi}, but the phone runs "
                f"{phone_abis}: build it with -DANDROID_ABI="
                f"{props.get('ro.product.cpu.abi') or 'arm64-v8a'}"
            )
        fs = AdbSysFS(tgt)
        self.device_state = read_android_state(tgt, fs)
        state = self.device_state
        if state.get("charging"):
            self.warnings.append(
                BenchWarning(
                    "charging",
                    "the phone was charging before the run: battery current x voltage measure "
                    "the charge flow, not the phone's draw, so no energy figure of this run "
                    "is valid (and charging heats the battery)",
                    "unplug the charger (use wireless debugging: `adb tcpip 5555`, "
                    "`adb connect PHONE:5555`) and run again; `dumpsys battery unplug` only "
                    "hides charging from apps, the battery still charges",
                )
            )
        status = state.get("thermal_status")
        if status:
            self.warnings.append(
                BenchWarning(
                    "thermal_status",
                    f"the phone's thermal status was {state.get('thermal_status_name')} "
                    f"({status}) before the run: it may already be throttling",
                    "let it cool down (--cooldown-s / --cooldown-margin-c) before measuring",
                )
            )
        return fs

    def push(self, bench: Path) -> tuple[str, str]:
        """Push llama-bench and the model; returns their paths on the phone."""
        tgt = self.target
        model = self.prepared.model.path
        remote_bench = f"{tgt.workdir}/llama-bench"
        remote_model = f"{tgt.workdir}/{Path(model).name}"
        self.emit({"event": "phase", "phase": "push", "target": self.spec.target})
        pushed_bench = tgt.push_checked(str(bench), remote_bench, mode="755")
        pushed_model = tgt.push_checked(str(model), remote_model)
        self.engine["pushed"] = {"llama-bench": pushed_bench, "model": pushed_model}
        self.engine["remote_paths"] = {"llama-bench": remote_bench, "model": remote_model}
        return remote_bench, remote_model

    def sense(self, fs: AdbSysFS) -> None:
        """Probe the sensors and sample the idle baseline."""
        from meltbench.sensors.sampler import sample_for

        spec = self.spec
        self.probed = _sensors(spec, fs)
        usable = [(s, p) for s, p in self.probed if s is not None and p.available]
        if usable and spec.sensors.idle_s > 0:
            self.emit({"event": "phase", "phase": "idle"})
            self.baseline = sample_for(usable, spec.sensors.idle_s, spec.sensors.hz)

    def bench(self, remote_bench: str, remote_model: str) -> None:
        """Run llama-bench with the sensors sampled beside it."""
        from meltbench.sensors.sampler import SensorSampler

        spec, tgt = self.spec, self.target
        self.argv = llama_bench_argv(spec, remote_bench, remote_model)
        argv = ["env", f"LD_LIBRARY_PATH={tgt.workdir}", *self.argv]
        timeout = spec.timeout_s or DEFAULT_TIMEOUT_S
        usable = [(s, p) for s, p in self.probed if s is not None and p.available]
        if usable:
            self.sampler = SensorSampler(usable, spec.sensors.hz, idle_priority=False)
            self.sampler.start()
        self.emit({"event": "phase", "phase": "load"})
        proc = None
        try:
            proc = tgt.start(argv)
            proc.close_stdin()
            deadline = time.monotonic() + timeout
            seen = 0
            while not proc.finished(0.25):
                seen = self._progress(proc, seen)
                if time.monotonic() > deadline:
                    proc.kill()
                    self.fail(
                        f"timed out after {timeout:g} s: llama-bench on {tgt.serial} did not "
                        "finish (raise --timeout or shorten the workload)"
                    )
                    break
            self._progress(proc, seen)
            if self.failure is None:
                code = proc.wait(0)
                if code != 0:
                    last = next((ln for ln in reversed(proc.stderr_tail()) if ln.strip()), "")
                    self.fail(f"llama-bench exited with status {code}: {last.strip()[:300]}")
        except TargetError as exc:
            self.fail(str(exc))
        except KeyboardInterrupt:
            self.interrupted = True
            self.fail("interrupted (Ctrl-C): llama-bench was killed on the phone")
            if proc is not None:
                proc.kill()
        finally:
            if self.sampler is not None:
                self.sampler.stop()
                self.series = self.sampler.series
            if proc is not None:
                self.stderr_tail = proc.stderr_tail()[-20:]
                self._parse("\n".join(proc.stdout_lines))

    def _progress(self, proc: Any, seen: int) -> int:
        """Emit a ``test`` event for each test llama-bench finished since ``seen``."""
        try:
            records, _ = parse_bench_json("\n".join(proc.stdout_lines))
        except ValueError:
            return seen
        for rec in records[seen:]:
            self.emit({"event": "test", "test": rec.label, "avg_ts": rec.avg_ts})
        return max(seen, len(records))

    def _parse(self, stdout: str) -> None:
        try:
            records, complete = parse_bench_json(stdout)
        except ValueError as exc:
            self.fail(f"llama-bench output not understood: {exc}")
            return
        self.records = records
        if not complete:
            self.fail(
                f"llama-bench output ended early ({len(records)} test(s) complete): "
                + (self.stderr_tail[-1].strip() if self.stderr_tail else "no error message")
            )

    # -- result ------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        wl = self.spec.workload
        metrics: dict[str, Any] = {}
        pp = next((r for r in self.records if r.kind == "pp" and r.n_prompt == wl.n_prompt), None)
        tg = next((r for r in self.records if r.kind == "tg" and r.n_gen == wl.n_gen), None)
        if pp is not None and pp.samples_ts:
            metrics["prefill_tps"] = summarize(pp.samples_ts)
        if tg is not None and tg.samples_ts:
            metrics["decode_tps"] = summarize(tg.samples_ts)
        if self.failure is None and (pp is None or tg is None):
            missing = [n for n, r in (("pp", pp), ("tg", tg)) if r is None]
            self.fail(f"llama-bench printed no {'/'.join(missing)} test for {wl.label}")
        for name, summary in metrics.items():
            if summary.cv is not None and summary.cv >= CV_THRESHOLD:
                self.warnings.append(
                    BenchWarning(
                        "high_variation",
                        f"{name}: standard deviation is {summary.cv:.0%} of the mean "
                        f"({summary.stddev:.4g} of {summary.mean:.4g})",
                        "close apps, keep the phone cool and unplugged, add --reps",
                        name,
                    )
                )
        if wl.reps < 3:
            self.warnings.append(
                BenchWarning(
                    "few_repetitions",
                    f"only {wl.reps} repetition(s) per llama-bench test; confidence intervals "
                    "are wide",
                    "use --reps 5 or more for numbers you publish or gate on",
                )
            )
        self.warnings.append(
            BenchWarning(
                "not_measured",
                "llama-bench reports the time of each repetition, not of each token: "
                "ttft_ms, itl_ms, tpot_ms, e2e_ms and per-window energies are not measured "
                "on adb targets (pp and tg are separate llama-bench tests)",
                "for token timings run the llama.cpp engine on the phone through Termux "
                "over SSH (--target ssh://...)",
            )
        )
        return metrics

    def engine_info(self) -> dict[str, Any]:
        first = self.records[0] if self.records else None
        info = dict(self.engine)
        if first is not None:
            info.update(
                {
                    "build_commit": first.build_commit,
                    "build_number": first.build_number,
                    "cpu_info": first.cpu_info,
                    "gpu_info": first.gpu_info,
                    "backends": first.backends,
                    "model_type": first.model_type,
                    "model_size": first.model_size,
                    "n_params": first.model_n_params,
                    "n_threads": first.n_threads,
                }
            )
        info["tests"] = [
            {
                "test": r.label,
                "n_prompt": r.n_prompt,
                "n_gen": r.n_gen,
                "n_depth": r.n_depth,
                "avg_ts": r.avg_ts,
                "stddev_ts": r.stddev_ts,
                "samples_ns": list(r.samples_ns),
                "samples_ts": list(r.samples_ts),
                "test_time": r.test_time,
            }
            for r in self.records
        ]
        info["argv"] = self.argv
        info["timing"] = (
            "llama-bench's own timer on the phone, per repetition; pp and tg are separate "
            "tests; no per-token timestamps"
        )
        if self.stderr_tail:
            info["stderr_tail"] = self.stderr_tail
        return info

    def sensors_info(self) -> tuple[dict[str, Any], dict[str, float]]:
        from meltbench.measure.energy_channels import select_energy_channels
        from meltbench.measure.sensor_analysis import analyze_sensors, power_series

        spec = self.spec
        sampler = self.sampler
        analysis = analyze_sensors(
            [p for _, p in self.probed],
            self.series,
            self.baseline,
            [],
            spec.workload.n_prompt,
            hz=spec.sensors.hz,
            idle_s=spec.sensors.idle_s if self.baseline is not None else 0.0,
            device_state=self.device_state,
            achieved_hz=sampler.achieved_hz if sampler is not None else None,
        )
        info = analysis.info
        info["clock"] = (
            "host perf_counter_ns: each row is read by the host over adb (one batched cat) "
            "and stamped at the middle of the round trip"
        )
        info["window"] = "the whole llama-bench process (model load, pp and tg tests)"
        if sampler is not None:
            info["policy"] = sampler.policy
            info["errors"] = sampler.errors
            info["max_bracket_ms"] = sampler.max_bracket_ns / 1e6
            info["rereads"] = sampler.rereads
            info["error_messages"] = dict(sampler.error_messages)
        if self.series is not None and self.series.channels:
            channels, _ = select_energy_channels(list(self.series.channels))
            power = power_series(self.series, channels)
            watts = [w for w in (power[1] if power else []) if w is not None]
            if watts and not self.device_state.get("charging"):
                info["avg_power_w_run"] = sum(watts) / len(watts)
        codes = {w.code for w in self.warnings}
        self.warnings += [w for w in analysis.warnings if w.code not in codes]
        return info, dict(analysis.single)


def execute_android(
    prepared: Any,
    on_event: EventCallback | None = None,
    *,
    target: AdbTarget | None = None,
) -> tuple[RunResult, bool]:
    """Run a prepared benchmark on the Android device of ``prepared.spec.target``.

    Args:
        prepared: a :class:`~meltbench.api.PreparedRun` whose ``spec.target`` is
            ``adb://SERIAL`` and whose model is a local GGUF file.
        on_event: receives progress events (``hello``, ``phase`` push/idle/load, one
            ``test`` per finished llama-bench test).
        target: an already built :class:`AdbTarget` (default: from ``spec.target``).

    Returns:
        ``(result, interrupted)``: ``result.status`` is ``failed`` with its cause when
        the device disconnected (``device disconnected: ...``), llama-bench failed or
        timed out, or the run was interrupted; finished tests are kept.

    Raises:
        UsageError: no llama-bench path, a model that is not a local file, a binary
            for another ABI, no adb server, or a device that is not attached/authorized
            (nothing is measured).
    """
    spec = prepared.spec
    bench = llama_bench_path(spec)
    model_path = prepared.model.path
    if model_path is None or not Path(model_path).is_file():
        raise UsageError(
            f"adb targets run GGUF files with llama-bench; {spec.model.ref!r} is not a "
            "local model file"
        )
    try:
        tgt = target or AdbTarget(spec.target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        tgt.check_online()
    except TargetError as exc:
        raise UsageError(f"{spec.target}: {exc}") from None

    started = utc_now()
    run = _AndroidRun(prepared, tgt, on_event)
    run.emit({"event": "hello", "target": spec.target})
    try:
        fs = run.inspect(bench)
        remote_bench, remote_model = run.push(bench)
        run.sense(fs)
        run.bench(remote_bench, remote_model)
    except TargetError as exc:
        run.fail(str(exc))
    except KeyboardInterrupt:
        run.interrupted = True
        run.fail("interrupted (Ctrl-C)")
    finally:
        for sensor, _ in run.probed:
            if sensor is not None:
                sensor.close()
    return _result(run, started), run.interrupted


def _result(run: _AndroidRun, started: str) -> RunResult:
    prepared, spec = run.prepared, run.spec
    metrics = run.metrics()
    sensors, single = run.sensors_info()
    for name, value in single.items():
        metrics[name] = summarize([value])
    engine = run.engine_info()
    settings = dict(prepared.settings.to_dict())
    settings.update(
        {
            "threads": engine.get("n_threads") or spec.engine.threads,
            "batch": spec.engine.batch,
            "ubatch": spec.engine.ubatch or spec.engine.batch,
            "llama_bench_argv": run.argv,
        }
    )
    return new_result(
        prepared,
        failure=run.failure,
        started_at=started,
        settings=settings,
        model=model_facts(prepared),
        engine=engine,
        environment=run.environment,
        metrics=metrics,
        memory={
            "peak_rss_bytes": None,
            "note": "not measured on adb targets (llama-bench runs and exits on the phone)",
        },
        warnings=[w.to_dict() for w in run.warnings],
        sensors=sensors,
        device_state=run.device_state,
    )
