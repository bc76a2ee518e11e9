"""Parsers of what a phone prints: llama-bench results, llama.cpp timing lines, getprop and
dumpsys.

Everything here is pure (text in, values out) and tested on recorded outputs
(``tests/fixtures/android/``; its README says which are real recordings and which are
hand-written from documentation).

**llama-bench** (``tools/llama-bench/llama-bench.cpp`` of llama.cpp): ``-o json`` prints
``[`` then one object per test as the test finishes (``json_printer::print_test``, flushed)
and ``]`` at the end; ``-o jsonl`` prints one object per line. Each object has the fields
of ``test::get_fields()`` (``build_commit``, ``build_number``, ``cpu_info``, ``gpu_info``,
``backends``, ``model_filename``, ``model_type``, ``model_size`` (bytes),
``model_n_params``, ``n_batch``, ``n_ubatch``, ``n_threads``, ..., ``n_prompt``,
``n_gen``, ``n_depth``, ``test_time`` (ISO 8601, the device's wall clock), ``avg_ns``,
``stddev_ns``, ``avg_ts``, ``stddev_ts``) and the raw ``samples_ns`` (ns per repetition)
and ``samples_ts`` (tokens per second per repetition, ``n_tokens * 1e9 / sample_ns``).
A default run makes *separate* tests: ``pp<n>`` (``n_gen == 0``: prompt processing only)
and ``tg<n>`` (``n_prompt == 0``: generation only, starting from an empty context, or from
``n_depth`` tokens); ``-pg`` makes a combined test (both non-zero).

**Timing lines**: ``llama_perf_context_print`` (``src/llama-context.cpp``) writes to the
log (stderr)::

    llama_perf_context_print:        load time =      32.16 ms
    llama_perf_context_print: prompt eval time =      32.01 ms /     6 tokens (    5.33 ms
        per token,   187.46 tokens per second)
    llama_perf_context_print:        eval time =     332.60 ms /    15 runs   (   22.17 ms
        per token,    45.10 tokens per second)
    llama_perf_context_print:       total time =     381.94 ms /    21 tokens

(a real recording, each quantity on *one* line of the log, wrapped here; see
``tests/fixtures/android/recorded``), and llama-server (``tools/server/server-context.cpp``,
``print_timings``) the same
``prompt eval time`` / ``eval time`` / ``total time`` lines after a slot prefix.

**Android**: ``getprop`` prints ``[name]: [value]`` lines; ``dumpsys battery``
(``BatteryService.dumpInternal``) ``  key: value`` lines; ``dumpsys thermalservice``
(``ThermalManagerService``) ``Thermal Status: N`` with N one of
``PowerManager.THERMAL_STATUS_*``; ``dumpsys power`` (``PowerManagerService``)
``mWakefulness=Awake`` and ``Display Power: state=ON``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BATTERY_STATUS",
    "THERMAL_STATUS",
    "BenchRecord",
    "parse_bench_json",
    "parse_bench_jsonl",
    "parse_dumpsys_battery",
    "parse_getprop",
    "parse_perf_lines",
    "parse_power_state",
    "parse_thermal_status",
]


# -- llama-bench ---------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRecord:
    """One llama-bench test (one object of its JSON output).

    Attributes:
        n_prompt, n_gen, n_depth: tokens of the test (``pp``: n_gen 0; ``tg``: n_prompt 0).
        samples_ns: duration of each repetition, ns (llama-bench's own clock, on the device).
        samples_ts: tokens per second of each repetition.
        avg_ns, stddev_ns, avg_ts, stddev_ts: llama-bench's own summaries.
        n_threads, n_batch, n_ubatch: settings it used.
        model_type: llama.cpp's description (``"gemma3 270M Q4_K - Medium"``).
        model_size: bytes of the model's tensors; model_n_params: parameter count.
        build_commit, build_number, cpu_info, gpu_info, backends: the build and machine.
        test_time: ISO 8601 start of the test on the device's wall clock.
        raw: the whole object.
    """

    n_prompt: int
    n_gen: int
    n_depth: int
    samples_ns: tuple[int, ...]
    samples_ts: tuple[float, ...]
    avg_ns: float | None = None
    stddev_ns: float | None = None
    avg_ts: float | None = None
    stddev_ts: float | None = None
    n_threads: int | None = None
    n_batch: int | None = None
    n_ubatch: int | None = None
    model_type: str | None = None
    model_size: int | None = None
    model_n_params: int | None = None
    build_commit: str | None = None
    build_number: int | None = None
    cpu_info: str | None = None
    gpu_info: str | None = None
    backends: str | None = None
    test_time: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """``"pp"`` (prompt only), ``"tg"`` (generation only) or ``"pg"`` (both)."""
        if self.n_gen == 0:
            return "pp"
        if self.n_prompt == 0:
            return "tg"
        return "pg"

    @property
    def label(self) -> str:
        """llama-bench's test name: ``pp64``, ``tg16``, ``pp64+tg16``, ``... @ d512``."""
        if self.kind == "pp":
            name = f"pp{self.n_prompt}"
        elif self.kind == "tg":
            name = f"tg{self.n_gen}"
        else:
            name = f"pp{self.n_prompt}+tg{self.n_gen}"
        return f"{name} @ d{self.n_depth}" if self.n_depth else name

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> BenchRecord:
        """A record from one JSON object of llama-bench.

        Raises:
            ValueError: a field is missing or has the wrong type (``n_prompt``, ``n_gen``,
                ``samples_ns``, ``samples_ts``), or the sample lists differ in length.
        """
        try:
            samples_ns = tuple(int(v) for v in obj["samples_ns"])
            samples_ts = tuple(float(v) for v in obj["samples_ts"])
            n_prompt, n_gen = int(obj["n_prompt"]), int(obj["n_gen"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a llama-bench test record: {exc!r}") from None
        if len(samples_ns) != len(samples_ts):
            raise ValueError(
                f"llama-bench record has {len(samples_ns)} samples_ns but "
                f"{len(samples_ts)} samples_ts"
            )

        def num(key: str, kind: type = float) -> Any:
            value = obj.get(key)
            try:
                return None if value is None else kind(value)
            except (TypeError, ValueError):
                return None

        def text(key: str) -> str | None:
            value = obj.get(key)
            return None if value is None else str(value)

        return cls(
            n_prompt=n_prompt,
            n_gen=n_gen,
            n_depth=num("n_depth", int) or 0,
            samples_ns=samples_ns,
            samples_ts=samples_ts,
            avg_ns=num("avg_ns"),
            stddev_ns=num("stddev_ns"),
            avg_ts=num("avg_ts"),
            stddev_ts=num("stddev_ts"),
            n_threads=num("n_threads", int),
            n_batch=num("n_batch", int),
            n_ubatch=num("n_ubatch", int),
            model_type=text("model_type"),
            model_size=num("model_size", int),
            model_n_params=num("model_n_params", int),
            build_commit=text("build_commit"),
            build_number=num("build_number", int),
            cpu_info=text("cpu_info"),
            gpu_info=text("gpu_info"),
            backends=text("backends"),
            test_time=text("test_time"),
            raw=dict(obj),
        )


def parse_bench_json(text: str) -> tuple[list[BenchRecord], bool]:
    """The tests of llama-bench's ``-o json`` output, also when it was cut short.

    llama-bench prints (and flushes) each test as it finishes, so the output of a run that
    died or lost its connection half-way holds every test completed before: those are
    returned, and ``complete`` is False. Text before the opening ``[`` (a stray log line)
    is skipped.

    Returns:
        ``(records, complete)``: ``complete`` is True when the closing ``]`` was read.

    Raises:
        ValueError: an object that is not a llama-bench record (see
            :meth:`BenchRecord.from_dict`).
    """
    start = text.find("[")
    if start < 0:
        return [], False
    decoder = json.JSONDecoder()
    records: list[BenchRecord] = []
    pos = start + 1
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            return records, False
        if text[pos] == "]":
            return records, True
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return records, False  # cut short inside an object
        if not isinstance(obj, dict):
            raise ValueError(f"llama-bench JSON holds a {type(obj).__name__}, not an object")
        records.append(BenchRecord.from_dict(obj))


def parse_bench_jsonl(text: str) -> list[BenchRecord]:
    """The tests of llama-bench's ``-o jsonl`` output (one object per line); a last line
    that was cut short is ignored.

    Raises:
        ValueError: a complete line that is not a llama-bench record.
    """
    records: list[BenchRecord] = []
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("{")]
    for i, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"line {i + 1} of llama-bench JSONL is not JSON") from None
        records.append(BenchRecord.from_dict(obj))
    return records


# -- llama.cpp timing lines ------------------------------------------------------------

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf)"
_PERF_RE = re.compile(
    r"(?P<what>load|prompt eval|eval|total|sampling) time =\s*" + _NUM + r" ms"
    r"(?: /\s*(?P<count>\d+) (?P<unit>tokens|runs))?"
    r"(?:\s*\(\s*" + _NUM + r" ms per token,\s*" + _NUM + r" tokens per second\))?"
)
_PERF_KEYS = {
    "load": "load",
    "prompt eval": "prompt_eval",
    "eval": "eval",
    "total": "total",
    "sampling": "sampling",
}


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_perf_lines(text: str) -> dict[str, dict[str, float | int | None]]:
    """The timing lines of llama.cpp (``llama_perf_context_print``,
    ``llama_perf_sampler_print``, llama-server's ``print_timings``).

    Returns:
        ``{"load"|"prompt_eval"|"eval"|"total"|"sampling": {"ms", "count", "unit",
        "ms_per_token", "tokens_per_s"}}`` for each line found (the last one wins when a
        line repeats, e.g. a server that served several requests); ``count`` is tokens
        (or runs, for ``eval``), None where the line has none. Values are the engine's
        own, measured on the machine that printed them.
    """
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        m = _PERF_RE.search(line)
        if not m:
            continue
        key = _PERF_KEYS[m.group("what")]
        out[key] = {
            "ms": _float(m.group(2)),
            "count": int(m.group("count")) if m.group("count") else None,
            "unit": m.group("unit"),
            "ms_per_token": _float(m.group(5)),
            "tokens_per_s": _float(m.group(6)),
        }
    return out


# -- Android: getprop and dumpsys ------------------------------------------------------

_PROP_RE = re.compile(r"^\[([^\]]+)\]: \[(.*)\]\s*$")

#: ``BatteryManager.BATTERY_STATUS_*`` (android.os.BatteryManager)
BATTERY_STATUS = {1: "Unknown", 2: "Charging", 3: "Discharging", 4: "Not charging", 5: "Full"}

#: ``PowerManager.THERMAL_STATUS_*`` (android.os.PowerManager, API 29)
THERMAL_STATUS = {
    0: "none",
    1: "light",
    2: "moderate",
    3: "severe",
    4: "critical",
    5: "emergency",
    6: "shutdown",
}


def parse_getprop(text: str) -> dict[str, str]:
    """``getprop`` without arguments: ``[ro.product.model]: [Pixel 7]`` lines to a dict."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        m = _PROP_RE.match(line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


def _bool(text: str) -> bool | None:
    low = text.strip().lower()
    return True if low == "true" else False if low == "false" else None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_dumpsys_battery(text: str) -> dict[str, Any]:
    """``dumpsys battery`` to values with units.

    Returns:
        ``level_pct`` (level * 100 / scale), ``status`` (``BATTERY_STATUS`` name),
        ``status_code``, ``ac_powered``, ``usb_powered``, ``wireless_powered``,
        ``dock_powered`` (bools; None when absent), ``plugged`` (True when any is),
        ``charging`` (status Charging, or Full/Not charging while plugged; None when the
        status is absent), ``voltage_mv``, ``temperature_c`` (the service reports tenths
        of a degree), ``technology``, ``present`` and ``updates_stopped`` (True after
        ``dumpsys battery unplug``/``set``: the values are then the ones set by hand, not
        the hardware's). Keys are None when the line is absent.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key:
            fields.setdefault(key.strip().lower(), value.strip())
    powered = {
        name: (_bool(fields[f"{name} powered"]) if f"{name} powered" in fields else None)
        for name in ("ac", "usb", "wireless", "dock")
    }
    status_code = _int(fields.get("status", ""))
    status = BATTERY_STATUS.get(status_code) if status_code is not None else None
    level, scale = _int(fields.get("level", "")), _int(fields.get("scale", ""))
    plugged = any(v for v in powered.values() if v)
    charging: bool | None = None
    if status is not None:
        charging = status == "Charging" or (status in ("Full", "Not charging") and plugged)
    temp = _int(fields.get("temperature", ""))
    return {
        "level_pct": (level * 100 / scale) if level is not None and scale else level,
        "status": status,
        "status_code": status_code,
        "ac_powered": powered["ac"],
        "usb_powered": powered["usb"],
        "wireless_powered": powered["wireless"],
        "dock_powered": powered["dock"],
        "plugged": plugged if any(v is not None for v in powered.values()) else None,
        "charging": charging,
        "voltage_mv": _int(fields.get("voltage", "")),
        "temperature_c": temp / 10 if temp is not None else None,
        "technology": fields.get("technology"),
        "present": _bool(fields["present"]) if "present" in fields else None,
        "updates_stopped": "UPDATES STOPPED" in text,
    }


_THERMAL_RE = re.compile(r"^\s*Thermal Status:\s*(\d+)\s*$", re.MULTILINE)


def parse_thermal_status(text: str) -> dict[str, Any]:
    """``dumpsys thermalservice``: the platform's thermal status.

    Returns:
        ``{"status": N or None, "name": "none"|"light"|...|None}`` (``THERMAL_STATUS``);
        None when the line is absent (Android < 10, or no thermal HAL).
    """
    m = _THERMAL_RE.search(text)
    if not m:
        return {"status": None, "name": None}
    code = int(m.group(1))
    return {"status": code, "name": THERMAL_STATUS.get(code)}


_WAKE_RE = re.compile(r"^\s*mWakefulness=(\w+)", re.MULTILINE)
_DISPLAY_RE = re.compile(r"^\s*Display Power: state=(\w+)", re.MULTILINE)


def parse_power_state(text: str) -> dict[str, Any]:
    """``dumpsys power``: whether the screen is on.

    Returns:
        ``wakefulness`` (``Awake``, ``Asleep``, ``Dreaming``, ``Dozing``), ``display_state``
        (``ON``, ``OFF``, ``DOZE``...) and ``screen_on``: from ``Display Power: state=``
        when present (ON -> True), else from ``mWakefulness`` (Awake -> True); None
        when neither line is there.
    """
    wake = _WAKE_RE.search(text)
    display = _DISPLAY_RE.search(text)
    screen_on: bool | None = None
    if display:
        screen_on = display.group(1).upper() == "ON"
    elif wake:
        screen_on = wake.group(1) == "Awake"
    return {
        "wakefulness": wake.group(1) if wake else None,
        "display_state": display.group(1) if display else None,
        "screen_on": screen_on,
    }
