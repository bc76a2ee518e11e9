"""Terminal output with rich: live progress during a run, then llama-bench-style tables.

Progress goes to stderr (so ``--format json > out.json`` stays clean); tables go to
stdout. Rendering reads results only; it never measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from meltbench import metrics as metrics_catalogue
from meltbench.results.schema import RunResult
from meltbench.results.tables import NUMERIC_COLUMNS, bench_columns, bench_rows, format_bytes

__all__ = [
    "RunProgress",
    "print_bench_table",
    "print_devices",
    "print_eval",
    "print_profile",
    "print_quant_study",
    "print_run_details",
    "print_runs_list",
    "print_sensor_status",
    "print_sensors",
    "print_sustain",
    "print_warnings",
]


class RunProgress:
    """A progress bar fed by worker events: load, warmup i/n, repetition i/n.

    Use as a context manager; pass :meth:`on_event` to ``meltbench.run``. The display is
    redrawn only when an event arrives (between requests), never by a timer: a refresh
    thread would wake up during timed requests and take CPU time from the engine's
    threads (on a 2-core machine running 2 engine threads, every wake-up preempts one).

    Args:
        total_reps: warmup + timed repetitions; None = open-ended (``sustain``).
        label: shown before the bar (the test label).
        console: where to draw (stderr by default).
        enabled: False draws nothing (``--quiet`` or a non-table format off a TTY).
    """

    def __init__(
        self,
        total_reps: int | None,
        label: str,
        console: Console | None = None,
        enabled: bool = True,
    ) -> None:
        self.total = total_reps
        self.label = label
        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=True,
            disable=not enabled,
            auto_refresh=False,
        )
        self.task = self.progress.add_task(f"{label}: preparing", total=total_reps)

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, event: dict[str, Any]) -> None:
        """Update the display from one worker event."""
        kind = event.get("event")
        if kind == "hello":
            self.progress.update(self.task, description=f"{self.label}: worker started")
        elif kind == "phase" and event.get("phase") == "load":
            self.progress.update(self.task, description=f"{self.label}: loading model")
        elif kind == "loaded":
            self.progress.update(self.task, description=f"{self.label}: measuring")
        elif kind == "rep":
            what = "warmup" if event.get("kind") == "warmup" else "repetition"
            done = f"({len(event.get('token_ns') or [])} tok)"
            if not event.get("token_ns") and event.get("t_end_ns") is not None:  # a forward pass
                done = f"({(event['t_end_ns'] - event['t_start_ns']) / 1e6:.2f} ms)"
            self.progress.update(
                self.task,
                advance=1,
                description=f"{self.label}: {what} {event.get('index', 0) + 1} done {done}",
            )
        elif kind == "request":
            record = event.get("record") or {}
            state = "ok" if record.get("ok") else "failed"
            self.progress.update(
                self.task,
                advance=1,
                description=f"{self.label}: {record.get('session')} turn "
                f"{int(record.get('turn') or 0) + 1} {state}",
            )
        self.progress.refresh()


def print_bench_table(results: Sequence[RunResult], console: Console) -> None:
    """The llama-bench-style table (pp and tg rows per run) plus TTFT/ITL/RSS columns."""
    table = Table(show_edge=True, header_style="bold")
    columns = bench_columns(list(results))
    for col in columns:
        table.add_column(col, justify="right" if col in NUMERIC_COLUMNS else "left")
    for result in results:
        for row in bench_rows(result):
            table.add_row(*(Text(row[c]) for c in columns))  # names are data, not markup
    console.print(table)


def print_run_details(result: RunResult, console: Console) -> None:
    """Confidence intervals, cold run, engine agreement, warnings, and failure cause."""
    m = result.metrics

    def ci(name: str) -> str:
        unit = metrics_catalogue.lookup(name).unit
        s = m.get(name)
        if s is None:
            return f"{name}: not measured"
        if s.ci95_low is None:
            return f"{name}: {s.mean:.2f} {unit} (n={s.n})"
        return (
            f"{name}: {s.mean:.2f} {unit}, 95% CI [{s.ci95_low:.2f}, {s.ci95_high:.2f}] (n={s.n})"
        )

    if result.forward is not None:
        lines = [ci("latency_ms"), ci("throughput_items_per_s"), *_forward_lines(result)]
        for line in lines:
            console.print(line, highlight=False, markup=False)
        print_sensor_status(result, console)
        print_warnings(result, console)
        return
    lines = [ci("ttft_ms"), ci("prefill_tps"), ci("decode_tps")]
    load = m.get("load_ms")
    if load is not None:
        lines.append(f"load_ms: {load.mean:.1f} ms")
    if result.cold:
        cold_ttft = result.cold.get("ttft_ms")
        cold_dec = result.cold.get("decode_tps")
        parts = []
        if cold_ttft is not None:
            parts.append(f"TTFT {cold_ttft:.2f} ms")
        if cold_dec is not None:
            parts.append(f"decode {cold_dec:.2f} tok/s")
        lines.append("cold first request: " + ", ".join(parts))
    fid = [f"{name} {ratio:.3f}" for name, ratio in result.fidelity.items() if ratio is not None]
    if fid:
        lines.append("ours / engine counters: " + ", ".join(fid))
    lines += _engine_lines(result)
    mem = result.memory
    if mem.get("peak_rss_bytes"):
        whose = " is the client's (meltbench's worker), not the server's" if _remote(result) else ""
        lines.append(
            f"peak RSS {format_bytes(mem['peak_rss_bytes'])}{whose} (kernel VmHWM "
            f"{format_bytes(mem.get('vm_hwm_bytes'))}, sampled "
            f"{format_bytes(mem.get('peak_rss_sampled_bytes'))} at "
            f"{(mem.get('achieved_hz') or 0):.0f} Hz)"
        )
    lines += _server_memory_lines(result)
    for line in lines:
        console.print(line, highlight=False, markup=False)
    print_sensor_status(result, console)
    if result.profile:
        print_profile(result.profile, console)
    print_warnings(result, console)


def _forward_lines(result: RunResult) -> list[str]:
    """A forward run's load, cold pass, output check, prepare step and memory."""
    fwd = result.forward or {}
    lines = []
    load = result.metrics.get("load_ms")
    if load is not None:
        lines.append(f"load_ms: {load.mean:.1f} ms")
    cold = result.cold.get("latency_ms")
    if cold is not None:
        lines.append(f"cold first pass: {cold:.2f} ms")
    check = fwd.get("output_check")
    if check:
        per = ", ".join(f"{name} {o['max_abs_diff']:.3g}"
                        for name, o in (check.get("per_output") or {}).items())  # fmt: skip
        verdict = "match" if check.get("match") else f"DIFFER: {check.get('reason')}"
        lines.append(
            f"outputs vs {fwd.get('reference')}: max |Δ| {per} (atol {check.get('atol'):g}, "
            f"rtol {check.get('rtol'):g}): {verdict}"
        )
    prep = fwd.get("prepare") or {}
    if prep.get("built"):
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in (prep.get("build_s") or {}).items())
        lines.append(f"built what was missing (cached for later runs); the entry's build: {steps}")
    mem = result.memory
    if mem.get("peak_rss_bytes"):
        lines.append(
            f"peak RSS {format_bytes(mem['peak_rss_bytes'])} (kernel VmHWM "
            f"{format_bytes(mem.get('vm_hwm_bytes'))})"
        )
    return lines


def _remote(result: RunResult) -> bool:
    """The model runs in a server process, not in the measured worker."""
    return (result.engine or {}).get("device") == "remote"


def _server_memory_lines(result: RunResult) -> list[str]:
    """The server's memory, when it runs on this machine and the engine read it."""
    if not _remote(result):
        return []
    proc = (result.engine or {}).get("server_process")
    counters = [r.counters or {} for r in result.repetitions]
    peaks = [c["server_peak_rss_bytes"] for c in counters if "server_peak_rss_bytes" in c]
    now = [c["server_rss_bytes"] for c in counters if "server_rss_bytes" in c]
    if not proc or not now:
        return ["server memory: not measured (the server is not a process on this machine)"]
    peak = f", peak (VmHWM, since it started) {format_bytes(max(peaks))}" if peaks else ""
    return [
        f"server {proc.get('name')} (pid {proc.get('pid')}): RSS {format_bytes(now[-1])} "
        f"after the last request{peak}"
    ]


def _engine_lines(result: RunResult) -> list[str]:
    """Timing mode and sampling cost, llama.cpp's parameters in force, KV cache, roofline."""
    m = result.metrics
    lines = []
    timing = result.spec.workload.timing
    sample = m.get("sample_ms")
    cost = f", choosing a token {sample.median:.3f} ms" if sample is not None else ""
    lines.append(f"timing: {timing}{cost}")
    params = (result.engine or {}).get("params")
    if params:
        fa = params.get("flash_attn")
        used = params.get("flash_attn_used")
        fa_text = f"{fa}" if used is None else f"{fa} -> {'on' if used else 'off'}"
        lines.append(
            f"llama.cpp: flash_attn {fa_text}, n_batch {params.get('n_batch')}, n_ubatch "
            f"{params.get('n_ubatch')}, type_k {params.get('type_k')}, type_v "
            f"{params.get('type_v')}, swa_full {str(params.get('swa_full')).lower()}, "
            f"load {params.get('load_mode')}, n_gpu_layers {params.get('n_gpu_layers')}"
        )
    mem = result.memory
    if mem.get("kv_cache_bytes") is not None:
        parts = [f"KV cache {format_bytes(mem['kv_cache_bytes'])}"]
        if mem.get("kv_cache_bytes_engine") is not None:
            formula = mem.get("kv_cache_bytes_formula")
            parts.append(
                "(llama.cpp's figure"
                + (f"; formula {format_bytes(formula)})" if formula is not None else ")")
            )
        else:
            parts.append("(formula)")
        lines.append(" ".join(parts))
    roof = result.roofline or {}
    bpt = m.get("bytes_per_token")
    if bpt is not None:
        line = f"bytes per decoded token {format_bytes(bpt.median)}"
        bound, eff = m.get("decode_bound_tps"), m.get("decode_efficiency")
        bw = roof.get("bandwidth_bytes_per_s")
        if bound is not None and bw:
            where = roof.get("bandwidth") or {}
            line += (
                f"; bound {bound.median:.1f} tok/s at {bw / 1e9:.1f} GB/s "
                f"({where.get('kernel', 'read')}, {where.get('threads')} threads)"
            )
            if eff is not None:
                line += f"; decode efficiency {eff.median:.1%}"
        else:
            line += "; no bandwidth measured (meltbench bandwidth)"
        lines.append(line)
    return lines


def print_bandwidth(result: Any, console: Console) -> None:
    """``meltbench bandwidth``: GB/s per kernel (rows) and thread count (columns)."""
    counts = sorted({t for by in result.results.values() for t in by})
    table = Table(show_edge=True, header_style="bold")
    table.add_column("kernel")
    for t in counts:
        table.add_column(f"{t} thr GB/s", justify="right")
    for kernel, by_threads in result.results.items():
        table.add_row(
            kernel, *(f"{by_threads[t] / 1e9:.2f}" if t in by_threads else "" for t in counts)
        )
    console.print(table)
    console.print(
        f"arrays of {format_bytes(result.size_bytes)} (last-level cache "
        f"{format_bytes(result.llc_bytes)}), best of {result.trials} trials; "
        f"{result.method}; stored as this target's roof",
        highlight=False,
    )


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "not measured" if value is None else f"{value:{spec}}{unit}"


def print_sensor_status(result: RunResult, console: Console) -> None:
    """Energy per window (gross and net of idle), temperatures, and every sensor that is
    missing with its reason, so "not measured" is never silent."""
    info = result.sensors or {}
    if not info:
        return
    m = result.metrics

    def med(name: str) -> float | None:
        s = m.get(name)
        return s.median if s is not None else None

    if info.get("energy_method"):
        idle = info.get("idle") or {}
        console.print(
            f"energy ({info['energy_method']}; idle {_fmt(idle.get('power_w'), '.2f', ' W')}): "
            f"prefill {_fmt(med('j_per_token_prefill'), '.4g', ' J/tok')} "
            f"(net {_fmt(med('j_per_token_prefill_net'), '.4g', ' J/tok')}), "
            f"decode {_fmt(med('j_per_token_decode'), '.4g', ' J/tok')} "
            f"(net {_fmt(med('j_per_token_decode_net'), '.4g', ' J/tok')}), "
            f"request {_fmt(med('energy_j'), '.3g', ' J')} at "
            f"{_fmt(med('avg_power_w'), '.2f', ' W')}",
            highlight=False,
        )
    if "temp_max_c" in m:
        idle_c = med("temp_idle_c")
        console.print(
            f"hottest sensor {m['temp_max_c'].max:.1f} °C ({info.get('temp_max_channel')}; "
            f"idle {_fmt(idle_c, '.1f', ' °C')})",
            highlight=False,
        )
    if "cpu_freq_mhz_decode" in m:
        console.print(
            f"CPU frequency during decode: {m['cpu_freq_mhz_decode'].median:.0f} MHz",
            highlight=False,
        )
    probes = info.get("probes") or []
    used = [p["sensor"] for p in probes if p.get("available")]
    missing = [p for p in probes if not p.get("available")]
    if used:
        console.print(f"sensors used: {', '.join(used)} at {info.get('hz'):g} Hz", highlight=False)
    if not info.get("energy_method"):
        console.print("energy: not measured (no energy or power sensor on this target)")
    if missing:
        console.print("sensors not available:", highlight=False)
        for p in missing:
            # reasons hold install hints like pip install 'meltbench[nvidia]': not markup
            console.print(f"  {p['sensor']}: {p.get('reason', '')}", highlight=False, markup=False)


def print_sensors(
    probes: Sequence[Any],
    readings: dict[str, list[float | None]],
    device_state: dict[str, Any],
    console: Console,
    root: str = "/",
) -> None:
    """``meltbench sensors``: every sensor with its status, channels and reason, then the
    device state (battery, charging, governor, power mode)."""
    table = Table(header_style="bold", title=f"sensors (sysfs root {root})")
    for col in ("sensor", "status", "channels", "reason / details"):
        table.add_column(col)
    for probe in probes:
        status = "[green]available[/]" if probe.available else "[red]missing[/]"
        chans = []
        values = readings.get(probe.sensor)
        for i, c in enumerate(probe.channels):
            text = f"{c.name} ({c.kind}, {c.unit})"
            if values and i < len(values) and values[i] is not None:
                text += f" = {values[i]:.6g}"
            chans.append(text)
        table.add_row(probe.sensor, status, Text("\n".join(chans) or "-"), Text(probe.reason))
    console.print(table)
    shown = {k: v for k, v in device_state.items() if v not in (None, [], {})}
    if shown:
        console.print("device state:", highlight=False)
        for key, value in shown.items():
            console.print(f"  {key}: {value}", highlight=False)
    else:
        console.print("device state: nothing exposed (no battery, governor or power mode)")


def print_sustain(result: RunResult, console: Console) -> None:
    """``meltbench sustain``: the verdict, initial vs steady-state tok/s, and the binned
    time series (decode tok/s, hottest temperature, CPU frequency, power)."""
    section = result.sustain or {}
    verdict = section.get("verdict") or {}
    series = section.get("series") or {}
    t_s = series.get("t_s") or []
    cols = [("t (s)", t_s, ".0f"), ("decode tok/s", series.get("decode_tps"), ".2f")]
    for name, key, spec in (
        ("max °C", "temp_max_c", ".1f"),
        ("CPU MHz", "cpu_freq_mhz", ".0f"),
        ("power W", "power_w", ".2f"),
    ):
        if series.get(key) is not None:
            cols.append((name, series[key], spec))
    table = Table(header_style="bold", title=f"{result.test}: time series")
    for name, _, _ in cols:
        table.add_column(name, justify="right")
    for i in range(len(t_s)):
        table.add_row(
            *(
                "" if vals is None or i >= len(vals) or vals[i] is None else f"{vals[i]:{spec}}"
                for _, vals, spec in cols
            )
        )
    console.print(table)
    throttled = verdict.get("throttled")
    word = {True: "[red]yes[/]", False: "[green]no[/]", None: "unknown"}[throttled]
    console.print(
        f"initial {_fmt(verdict.get('initial_tps'), '.2f', ' tok/s')}, steady state "
        f"{_fmt(verdict.get('steady_tps'), '.2f', ' tok/s')}, change "
        f"{_fmt(-verdict['drop_ratio'] if verdict.get('drop_ratio') is not None else None, '+.1%')}"
    )
    tt = verdict.get("time_to_throttle_s")
    console.print(
        f"throttled: {word}"
        + (f" after {tt:.0f} s" if tt is not None else "")
        + f" -- {verdict.get('reason', '')}"
    )
    print_sensor_status(result, console)


def print_profile(profile: dict[str, Any], console: Console) -> None:
    """Time per operator category of the profiled request, largest first, with shares."""
    cats = profile.get("categories_ms") or {}
    total = sum(cats.values()) or 1.0
    table = Table(
        title="time per operator category (one profiled request)",
        caption=str(profile.get("source", "engine profiler")),
    )
    table.add_column("category")
    table.add_column("ms", justify="right")
    table.add_column("share", justify="right")
    for name, ms in sorted(cats.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{ms:.2f}", f"{ms / total:.1%}")
    console.print(table)


def print_warnings(result: RunResult, console: Console) -> None:
    """The run's typed warnings (code, message, advice), then its failure cause if any."""
    for w in result.warnings:
        text = escape(f"[{w['code']}] {w['message']} -- {w['advice']}")
        console.print(f"[yellow]warning[/] {text}")
    if result.failure:
        console.print(f"[bold red]run failed:[/] {escape(result.failure)}")


def print_runs_list(rows: Sequence[dict[str, Any]], console: Console) -> None:
    """Table of stored runs (``meltbench results list``)."""
    table = Table(header_style="bold")
    for col in ("run_id", "started_at", "status", "test", "model", "quant", "engine", "threads"):
        table.add_column(col)
    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"[red]{r['status']}[/]"
        table.add_row(
            r["run_id"][:12],
            r["started_at"][:19].replace("T", " "),
            status,
            r["test"],
            r.get("model_name") or "",
            r.get("quant") or "",
            r["engine"],
            str(r.get("threads") or ""),
        )
    console.print(table)


_ACCURACY_ROWS = (
    ("perplexity", "perplexity", ".4f"),
    ("perplexity_ref", "reference perplexity", ".4f"),
    ("ppl_ratio", "perplexity ratio (model / reference)", ".4f"),
    ("kl_mean_nats", "KL divergence mean (nats)", ".5f"),
    ("kl_median_nats", "KL divergence median (nats)", ".5f"),
    ("kl_p99_nats", "KL divergence p99 (nats)", ".5f"),
    ("kl_max_nats", "KL divergence max (nats)", ".5f"),
    ("kl_topk_bound_mean_nats", "KL top-k lower bound mean (nats)", ".5f"),
    ("ref_topk_mass_mean", "reference top-k mass mean", ".2%"),
    ("top1_agreement", "top-1 agreement", ".4%"),
)


def print_eval(result: RunResult, console: Console) -> None:
    """``meltbench eval``: the scores of one evaluation and how they were computed."""
    acc = result.accuracy or {}
    model = " ".join(str(x) for x in (result.model.get("name"), result.model.get("quant")) if x)
    console.print(f"{model or result.model.get('ref')} on {acc.get('engine', '')}", highlight=False)
    table = Table(header_style="bold", title=result.test)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, label, spec in _ACCURACY_ROWS:
        if name in result.metrics:
            table.add_row(label, f"{result.metrics[name].median:{spec}}")
    for name in sorted(result.metrics):
        if name.startswith("task_"):
            table.add_row(name, f"{result.metrics[name].median:.4f}")
    console.print(table)
    if acc.get("corpus"):
        method = acc.get("method") or {}
        console.print(
            f"{acc.get('n_scored')} tokens scored of {acc.get('n_tokens')} "
            f"({acc.get('corpus_chars')} characters of {acc.get('corpus')}); "
            f"windows of {method.get('ctx')} tokens, stride {method.get('stride')}, "
            f"{method.get('n_windows')} windows (Hugging Face strided sliding window)",
            highlight=False,
        )
    ref = acc.get("reference")
    if ref:
        console.print(
            f"reference: {ref.get('model')} ({ref.get('quant') or ref.get('engine') or ''}), "
            f"perplexity {ref.get('perplexity', 0):.4f}; KL: {acc.get('kl_method', '')}",
            highlight=False,
        )
    if acc.get("saved_reference"):
        console.print(f"reference saved to {acc['saved_reference']}", highlight=False)


def print_quant_study(study: Any, console: Console) -> None:
    """``meltbench quant-study``: one row per quantization type, Pareto front marked."""
    table = Table(header_style="bold", title=f"quantization study of {study.source}")
    cols = (
        "quant", "size", "bits/w", "pp t/s", "tg t/s", "peak RSS",
        "PPL", "ΔPPL", "KL mean", "KL p99", "top-1", "Pareto",
    )  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col in ("quant", "Pareto") else "right")
    for row in study.rows:
        r = row.result
        size = r.model.get("size_bytes")
        params = r.model.get("n_params")
        bpw = f"{size * 8 / params:.2f}" if size and params else ""
        ratio = row.metric("ppl_ratio")

        def val(name: str, spec: str, row: Any = row) -> str:
            v = row.metric(name)
            return "" if v is None else f"{v:{spec}}"

        table.add_row(
            row.quant + (" (source)" if row.is_source else ""),
            format_bytes(size),
            bpw,
            val("prefill_tps", ".1f"),
            val("decode_tps", ".2f") + ("" if r.ok else " FAILED"),
            format_bytes(r.memory.get("peak_rss_bytes")),
            val("perplexity", ".3f"),
            "" if ratio is None else f"{ratio - 1:+.2%}",
            val("kl_mean_nats", ".4f"),
            val("kl_p99_nats", ".4f"),
            val("top1_agreement", ".2%"),
            "*" if row.pareto else "",
        )
    console.print(table)
    console.print(study.reference_note, highlight=False)
    notes = sorted({row.note for row in study.rows if not row.is_source})
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    console.print(
        "Pareto (*): no other type has both higher decode tok/s and lower mean KL.",
        highlight=False,
    )


def print_devices(devices: Sequence[dict[str, Any]], console: Console) -> None:
    """``meltbench devices``: one row per target with reachability, platform, engines and
    the sensors present (as :func:`meltbench.targets.devices.list_devices` gives them)."""
    table = Table(header_style="bold", title="targets")
    for col in (
        "target",
        "kind",
        "reachable",
        "platform",
        "memory",
        "python",
        "engines",
        "sensors",
    ):
        table.add_column(col)
    for d in devices:
        engines = d.get("engines") or {}
        usable = [n for n, e in engines.items() if isinstance(e, dict) and e.get("available")]
        sensors = d.get("sensors")
        if isinstance(sensors, list):
            present = [s["sensor"] for s in sensors if s.get("available")]
            sensor_text = ", ".join(present) or "none"
        else:
            sensor_text = str(sensors or "")
        platform = " ".join(
            str(x) for x in (d.get("os_release") or d.get("os"), d.get("arch"), d.get("cpu")) if x
        )
        reach = "[green]yes[/]" if d.get("reachable") else f"[red]no[/] {d.get('error') or ''}"
        table.add_row(
            str(d.get("name", "")),
            str(d.get("kind", "")),
            reach,
            platform,
            format_bytes(d.get("memory_bytes")),
            str(d.get("python") or ""),
            ", ".join(usable) or "-",
            sensor_text,
        )
    console.print(table)
