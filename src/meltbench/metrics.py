"""The metrics catalogue: every metric meltbench reports, once (name, unit, direction,
definition, unit of replication, source).

Everything that needs to know about a metric reads it from here: ``compare`` (which way
is better, what a sample is), the terminal and HTML reports (units), the docs (the
README's table is checked against it by ``tests/unit/test_metrics_catalogue.py``), and
docstrings refer to it for the definitions. ``python -m meltbench.metrics`` prints it as
a Markdown table.

Names follow the field's terms with the unit in the name (``_ms``, ``_tps``, ``_bytes``,
``_j``, ``_w``, ``_c``, ``_nats``, ``_mhz``). Families: the energy metrics exist per
measurement *window* (``_prefill``, ``_decode``, ``_load``) and net of idle power
(``_net``), e.g. ``energy_j_decode_net``; lm-evaluation-harness scores are
``task_<task>_<metric>``. :func:`lookup` resolves every such name to its entry.

This module is pure data: it imports nothing of meltbench, so any layer may read it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["CATALOGUE", "WINDOWS", "MetricDef", "direction", "lookup", "markdown_table"]

Per = Literal["request", "token", "run"]


@dataclass(frozen=True)
class MetricDef:
    """One metric.

    Attributes:
        name: the metric's name (for a family member, the full name, e.g.
            ``energy_j_decode``).
        unit: display unit (``ms``, ``tok/s``, ``bytes``, ``J``, ``W``, ``°C``, ``nats``,
            ``MHz``, or ``""`` for a ratio).
        direction: +1 higher is better, -1 lower is better, 0 neither (a state such as a
            clock frequency: ``compare`` refuses it).
        per: unit of replication: ``request`` (one sample per timed repetition), ``token``
            (several per repetition, e.g. one per token gap: compared per repetition) or
            ``run`` (one value per run).
        definition: what is measured, exactly.
        source: where the definition or formula comes from.
    """

    name: str
    unit: str
    direction: Literal[1, -1, 0]
    per: Per
    definition: str
    source: str


_LLAMA_BENCH = "llama.cpp tools/llama-bench (pp/tg rates)"
_SERVING = "serving-benchmark convention (vLLM benchmark_serving, GenAI-Perf)"
_ZEUS = "begin/end energy windows as in ml-energy/zeus; meltbench.measure.energy"


def _m(
    name: str, unit: str, direction: Literal[1, -1, 0], per: Per, definition: str, source: str
) -> MetricDef:
    return MetricDef(name, unit, direction, per, definition, source)


_ENTRIES = (
    # -- timing (meltbench.measure.timing, meltbench.measure.analysis)
    _m("load_ms", "ms", -1, "run", "model load, from engine init to ready", "meltbench"),
    _m(
        "latency_ms",
        "ms",
        -1,
        "request",
        "forward task: one forward pass over the batch, from NumPy inputs handed to the engine "
        "to NumPy outputs back on the host",
        "meltbench.forward.analysis",
    ),
    _m(
        "throughput_items_per_s",
        "items/s",
        1,
        "request",
        "forward task: batch size / latency of the pass (sequences or images per second)",
        "meltbench.forward.analysis",
    ),
    _m(
        "j_per_item",
        "J",
        -1,
        "run",
        "forward task: energy of the window spanning every timed pass / items in those passes",
        _ZEUS,
    ),
    _m(
        "ttft_ms",
        "ms",
        -1,
        "request",
        "request start to the first generated token being available",
        _SERVING,
    ),
    _m(
        "prefill_tps",
        "tok/s",
        1,
        "request",
        "n_prompt / prefill time; prefill = request start until the first token's logits",
        _LLAMA_BENCH,
    ),
    _m(
        "decode_tps",
        "tok/s",
        1,
        "request",
        "(n_gen - 1) / (time of last token - time of first token)",
        _LLAMA_BENCH,
    ),
    _m(
        "itl_ms",
        "ms",
        -1,
        "token",
        "every gap between consecutive generated tokens, pooled over the timed repetitions "
        "(p50/p90/p99; the summary keeps each repetition's count, groups)",
        _SERVING,
    ),
    _m("tpot_ms", "ms", -1, "request", "(e2e - ttft) / (n_gen - 1)", _SERVING),
    _m("e2e_ms", "ms", -1, "request", "request start to last token", _SERVING),
    _m(
        "sample_ms",
        "ms",
        -1,
        "request",
        "time to choose one token (greedy argmax): t_sample_ms / n_sample of the engine",
        "llama.cpp llama_perf_context",
    ),
    _m(
        "engine_prefill_tps",
        "tok/s",
        1,
        "request",
        "the engine's own prefill rate, n_p_eval / t_p_eval",
        "llama.cpp llama_perf_context",
    ),
    _m(
        "engine_decode_tps",
        "tok/s",
        1,
        "request",
        "the engine's own decode rate, n_eval / t_eval",
        "llama.cpp llama_perf_context",
    ),
    # -- request workloads and server load (meltbench.measure.requests, .goodput)
    _m(
        "prepare_ms",
        "ms",
        -1,
        "request",
        "request workloads: rendering the chat template and tokenizing (locally), or building "
        "the HTTP body: t_sent - t_start",
        "meltbench",
    ),
    _m(
        "app_e2e_ms",
        "ms",
        -1,
        "request",
        "the app workload: template, tokenizer (or the network), generation, detokenizing "
        "and parsing the JSON answer: from building the prompt to a parsed answer",
        "meltbench; the app end to end of 'Are We There Yet?' (AutoLife)",
    ),
    _m(
        "input_tokens",
        "tokens",
        0,
        "request",
        "prompt tokens of a request (the engine's tokenizer, or the server's usage)",
        _SERVING,
    ),
    _m(
        "cached_tokens",
        "tokens",
        0,
        "request",
        "prompt tokens reused from the KV cache (the common prefix with the previous request; "
        "a server's usage.prompt_tokens_details.cached_tokens)",
        "llama.cpp server prompt cache; OpenAI usage",
    ),
    _m(
        "output_tokens",
        "tokens",
        0,
        "request",
        "generated tokens of a request, end-of-generation token included",
        _SERVING,
    ),
    _m(
        "request_throughput_rps",
        "req/s",
        1,
        "run",
        "completed requests / the run's span (first request start to last request end)",
        _SERVING,
    ),
    _m(
        "output_tps",
        "tok/s",
        1,
        "run",
        "output tokens of every completed request / the run's span (aggregate throughput)",
        _SERVING,
    ),
    _m("failed_requests", "", -1, "run", "timed requests that failed", _SERVING),
    _m(
        "goodput_rps",
        "req/s",
        1,
        "run",
        "completed requests meeting every --slo / the run's span",
        "vLLM benchmarks/serve.py goodput",
    ),
    _m(
        "slo_attainment",
        "",
        1,
        "run",
        "share of the timed requests (failed ones included) that met every --slo",
        "serving-benchmark convention (DistServe SLO attainment)",
    ),
    _m(
        "app_parse_rate",
        "",
        1,
        "run",
        "the app: share of answers that held a JSON object with the asked keys",
        "meltbench",
    ),
    _m(
        "app_accuracy",
        "",
        1,
        "run",
        "the app: share of answers whose location and activity equal the recorded ones",
        "meltbench",
    ),
    # -- memory
    _m(
        "peak_rss_bytes",
        "bytes",
        -1,
        "run",
        "peak resident memory of the worker: the larger of the kernel's high-water mark (VmHWM) "
        "and the RSS sampled from outside the worker at --memory-hz",
        "proc(5) VmHWM",
    ),
    _m(
        "peak_gpu_memory_bytes",
        "bytes",
        -1,
        "run",
        "peak GPU memory in use during the run (NVML)",
        "NVIDIA NVML nvmlDeviceGetMemoryInfo",
    ),
    _m(
        "kv_cache_bytes",
        "bytes",
        -1,
        "run",
        "KV cache size of the context (the engine's own figure, else the model's shape)",
        "llama.cpp llama_kv_cache log; meltbench.models.footprint",
    ),
    # -- roofline (meltbench.measure.roofline)
    _m(
        "bytes_per_token",
        "bytes",
        -1,
        "run",
        "weights read per decoded token + KV cache read per decoded token",
        "roofline model, Williams et al. 2009, CACM 52(4)",
    ),
    _m(
        "decode_bound_tps",
        "tok/s",
        1,
        "run",
        "memory-bandwidth bound on decode: read bandwidth / bytes_per_token",
        "roofline model, Williams et al. 2009, CACM 52(4)",
    ),
    _m(
        "decode_efficiency",
        "",
        1,
        "request",
        "decode_tps / decode_bound_tps (fraction of the bandwidth bound reached)",
        "roofline model, Williams et al. 2009, CACM 52(4)",
    ),
    # -- energy families (one per window, and _net of idle power)
    _m(
        "energy_j",
        "J",
        -1,
        "request",
        "energy over the window (integrated counter or power)",
        _ZEUS,
    ),
    _m("avg_power_w", "W", -1, "request", "energy_j / window duration", _ZEUS),
    _m("j_per_token", "J", -1, "request", "energy_j / tokens of the window", _ZEUS),
    _m("tokens_per_j", "tok/J", 1, "request", "tokens of the window / energy_j", _ZEUS),
    # -- temperature and frequency (meltbench.measure.sensor_analysis)
    _m(
        "temp_max_c",
        "°C",
        -1,
        "run",
        "hottest temperature sensor during the run",
        "sysfs thermal / hwmon",
    ),
    _m(
        "temp_idle_c",
        "°C",
        -1,
        "run",
        "hottest temperature sensor during the idle baseline",
        "sysfs thermal / hwmon",
    ),
    _m(
        "cpu_freq_mhz",
        "MHz",
        0,
        "request",
        "mean CPU clock over the window (cpufreq)",
        "sysfs cpufreq scaling_cur_freq",
    ),
    _m(
        "throttled",
        "",
        0,
        "run",
        "whether thermal or power throttling was detected",
        "sysfs thermal / Jetson / NVML throttle reasons",
    ),
    # -- accuracy (meltbench.accuracy)
    _m(
        "perplexity",
        "",
        -1,
        "run",
        "exp(mean negative log-likelihood) over scored tokens of the text windows",
        "llama.cpp tools/perplexity",
    ),
    _m(
        "perplexity_ref",
        "",
        -1,
        "run",
        "perplexity of the reference model on the same text",
        "llama.cpp tools/perplexity",
    ),
    _m("ppl_ratio", "", -1, "run", "perplexity / perplexity_ref", "llama.cpp tools/perplexity"),
    _m(
        "kl_mean_nats",
        "nats",
        -1,
        "run",
        "mean over tokens of KL(reference || model) of the full next-token distributions "
        "(every vocabulary entry; the reference scored in lockstep)",
        "llama.cpp tools/perplexity --kl-divergence",
    ),
    _m(
        "kl_topk_bound_mean_nats",
        "nats",
        -1,
        "run",
        "a lower bound of kl_mean_nats: KL over the reference's top-k tokens plus one "
        "bucket for the rest (all a saved reference file allows)",
        "data-processing inequality (Cover & Thomas, Thm 2.8.1)",
    ),
    _m(
        "ref_topk_mass_mean",
        "",
        1,
        "run",
        "mean probability the reference puts on its top-k tokens: how tight the top-k "
        "bound is (1 = exact)",
        "meltbench.accuracy.divergence",
    ),
    _m(
        "kl_median_nats",
        "nats",
        -1,
        "run",
        "median over tokens of the per-token KL",
        "llama.cpp tools/perplexity --kl-divergence",
    ),
    _m(
        "kl_p99_nats",
        "nats",
        -1,
        "run",
        "99th percentile over tokens of the per-token KL",
        "llama.cpp tools/perplexity --kl-divergence",
    ),
    _m(
        "kl_max_nats",
        "nats",
        -1,
        "run",
        "largest per-token KL",
        "llama.cpp tools/perplexity --kl-divergence",
    ),
    _m(
        "top1_agreement",
        "",
        1,
        "run",
        "fraction of tokens where model and reference agree on the most likely next token",
        "llama.cpp tools/perplexity --kl-divergence ('Same top p')",
    ),
)

CATALOGUE: dict[str, MetricDef] = {m.name: m for m in _ENTRIES}
"""Base metrics by name (family members resolve through :func:`lookup`)."""

WINDOWS = ("prefill", "decode", "load", "forward")
"""Measurement windows of the energy and frequency families."""

_WINDOWED = ("energy_j", "avg_power_w", "j_per_token", "tokens_per_j", "cpu_freq_mhz")
_NETTABLE = ("energy_j", "avg_power_w", "j_per_token", "tokens_per_j", "j_per_item")


def lookup(name: str) -> MetricDef:
    """The catalogue entry of metric ``name``, family members included.

    ``energy_j_decode_net`` resolves to ``energy_j`` for the decode window net of idle
    power; ``task_<task>_<metric>`` (lm-evaluation-harness) to a score where higher is
    better.

    Raises:
        KeyError: a name that is not a metric meltbench reports, or an lm-eval standard
            error (``task_*_stderr``: a spread, not a metric).
    """
    if name in CATALOGUE:
        return CATALOGUE[name]
    if name.startswith("task_"):
        if name.endswith("_stderr"):
            raise KeyError(f"{name!r} is a standard error, not a metric")
        return MetricDef(
            name,
            "",
            1,
            "run",
            "an lm-evaluation-harness task score (higher is better)",
            "EleutherAI lm-evaluation-harness",
        )
    base, net = (name[: -len("_net")], True) if name.endswith("_net") else (name, False)
    for window in WINDOWS:
        stem = base.removesuffix(f"_{window}")
        if stem != base and stem in _WINDOWED and (not net or stem in _NETTABLE):
            entry = CATALOGUE[stem]
            definition = f"{entry.definition}; window: {window}"
            if net:
                definition += "; net of idle power x window duration"
            per: Per = "run" if window in ("load", "forward") else entry.per
            return replace(entry, name=name, definition=definition, per=per)
    if net and base in _NETTABLE:  # the whole request, net of idle
        entry = CATALOGUE[base]
        return replace(entry, name=name, definition=f"{entry.definition}; net of idle power")
    raise KeyError(f"{name!r} is not a metric meltbench reports (see meltbench.metrics)")


def direction(name: str) -> Literal[1, -1]:
    """+1 if higher is better for metric ``name``, -1 if lower is better.

    Raises:
        ValueError: a name not in the catalogue, a standard error, or a metric with no
            better direction (``throttled``, ``cpu_freq_mhz_decode``).
    """
    try:
        entry = lookup(name)
    except KeyError as exc:
        raise ValueError(
            f"no known direction (higher or lower is better) for metric {name!r}: {exc.args[0]}"
        ) from None
    if entry.direction == 0:
        raise ValueError(f"no known direction (higher or lower is better) for metric {name!r}")
    return entry.direction


def markdown_table() -> str:
    """The catalogue as a Markdown table (name, unit, better, per, definition, source)."""
    better = {1: "higher", -1: "lower", 0: "-"}
    rows = [
        "| metric | unit | better | per | definition | source |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in _ENTRIES:
        rows.append(
            f"| `{m.name}` | {m.unit or '-'} | {better[m.direction]} | {m.per} | "
            f"{m.definition} | {m.source} |"
        )
    rows.append(
        "| `<family>_<window>[_net]` | | | | energy_j, avg_power_w, j_per_token, tokens_per_j "
        "per window (prefill, decode, load, forward); `_net`: net of idle power; cpu_freq_mhz per "
        "window "
        "| meltbench.measure.energy |"
    )
    rows.append(
        "| `task_<task>_<metric>` | - | higher | run | an lm-evaluation-harness task score "
        "| EleutherAI lm-evaluation-harness |"
    )
    return "\n".join(rows)


if __name__ == "__main__":  # python -m meltbench.metrics
    sys.stdout.write(markdown_table() + "\n")
