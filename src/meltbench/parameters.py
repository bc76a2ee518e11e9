"""The run parameters, declared once: keyword, spec location, CLI flags, type, default,
help and sweep axis.

Everything that names a run setting is generated from :data:`PARAMETERS`:

- the keywords of :func:`meltbench.run` / :func:`meltbench.api.build_spec` and where
  each goes in :class:`meltbench.config.RunSpec` (:func:`flat_fields`);
- the ``run`` and ``sustain`` options and the ``sweep`` list options of the CLI
  (:func:`add_run_options`, :func:`add_sweep_list_options`), their help with the default;
- the name an error message gives a bad value (:func:`flag_names`: the flag for the CLI,
  the keyword for a sweep file);
- the sweep axes and their types (:data:`SWEEP_AXES`, :data:`INT_AXES`).

The numeric defaults here are the spec's defaults (``config.py`` reads them from
:func:`default`), so the help can never disagree with what runs. The ``sustain``
command's own workload defaults are :data:`SUSTAIN_DEFAULTS`.

Pure data and argparse only: ``meltbench --help`` builds its parser from this module
without importing pydantic.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INT_AXES",
    "PARAMETERS",
    "SUSTAIN_DEFAULTS",
    "SWEEP_AXES",
    "Parameter",
    "add_run_options",
    "add_sweep_list_options",
    "default",
    "flag_names",
    "flat_fields",
    "options_from_args",
    "parse_engine_option",
    "sensor_names",
]


@dataclass(frozen=True)
class Parameter:
    """One run setting.

    Attributes:
        key: the flat keyword (``meltbench.run(n_prompt=64)``, a sweep file's key).
        path: where it lives in ``RunSpec`` (``workload.n_prompt``); None for a sweep-only
            axis (``quant``).
        flags: CLI flags (``("-p", "--n-prompt")``); empty when the CLI has none.
        type: ``int``, ``float``, ``str`` or ``flag`` (a store-true switch).
        help: what it sets, without the default.
        default: the spec's default value (None: no fixed value; see ``default_text``).
        default_text: how the help states a default that is not a value ("physical
            cores"); None to print ``default``, or nothing when that is None too.
        axis: what a list of it is in a sweep (``prompt lengths``); None: not a sweep axis.
        sweep_flag: the sweep command takes a list for it on the command line.
        group: the help section (``sensors and cool-down``); None for the main one.
        metavar, choices: as argparse's.
        in_sustain: the ``sustain`` command has it too.
        own_option: :func:`add_run_options` adds its flag (False for ``--target``, which
            the CLI declares with the other target options that many commands share).
    """

    key: str
    path: str | None
    flags: tuple[str, ...]
    type: str
    help: str
    default: Any = None
    default_text: str | None = None
    axis: str | None = None
    sweep_flag: bool = False
    group: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    in_sustain: bool = True
    own_option: bool = True

    @property
    def dest(self) -> str:
        """The argparse attribute (``n_prompt`` for ``--n-prompt``)."""
        return self.flags[-1].lstrip("-").replace("-", "_") if self.flags else self.key

    def help_text(self, default_value: Any = None) -> str:
        """The help line with its default, e.g. ``prompt tokens per request (default: 512)``."""
        value = default_value if default_value is not None else self.default
        text = self.default_text if self.default_text is not None else value
        if text is None or text == "" or self.type == "flag":
            return self.help
        return (
            f"{self.help} (default: {text:g})"
            if isinstance(text, float)
            else (f"{self.help} (default: {text})")
        )


_SENSORS = "sensors and cool-down"
_FORWARD = "forward tasks (encoders and vision models)"
_WORKLOADS = "request workloads (conversations, documents, the app) and server load"

PARAMETERS: tuple[Parameter, ...] = (
    Parameter("model", "model.ref", ("-m", "--model"), "str",
              "GGUF path or registered alias", default="gemma3-270m-q4_k_m", axis="models",
              sweep_flag=True),
    Parameter("engine", "engine.name", ("-e", "--engine"), "str",
              "inference engine (see meltbench engines)", default="llama.cpp", axis="engines",
              sweep_flag=True),
    Parameter("weights", "model.weights", ("--weights",), "str",
              "random: build --model (a preset or config.json) with random weights",
              choices=("pretrained", "random"), axis="pretrained/random", sweep_flag=True),
    Parameter("quant", None, ("--quant",), "str", "GGUF quantization variants",
              axis="GGUF quantization variants (requantized from the model)", sweep_flag=True,
              in_sustain=False),
    Parameter("dtype", "engine.dtype", ("--dtype",), "str",
              "float32, bfloat16, float16, int4 (engines that take one)", axis="dtypes",
              sweep_flag=True),
    Parameter("device", "engine.device", ("--device",), "str",
              "cpu, cuda, mps (engines that take one)", axis="devices"),
    Parameter("endpoint", "engine.endpoint", ("--endpoint",), "str",
              "base URL of an OpenAI-compatible server (openai)", axis="endpoints"),
    Parameter("profile", "profile", ("--profile",), "flag",
              "add one profiled request: time per operator category"),
    Parameter("threads", "engine.threads", ("-t", "--threads"), "int", "CPU threads",
              default_text="physical cores", axis="thread counts", sweep_flag=True),
    Parameter("task", "workload.task", ("--task",), "str",
              "generate: text generation (pp/tg, requests); encode: an encoder's forward "
              "pass over token ids; classify: a vision model's over images",
              default="generate", default_text="generate; encode/classify for their presets",
              choices=("generate", "encode", "classify"), axis="tasks", sweep_flag=True,
              in_sustain=False, group=_FORWARD),
    Parameter("batch_size", "workload.batch_size", ("--batch-size",), "int",
              "items per forward pass: sequences (encode) or images (classify)", default=1,
              axis="forward batch sizes", sweep_flag=True, group=_FORWARD, in_sustain=False),
    Parameter("seq_len", "workload.seq_len", ("--seq-len",), "int",
              "tokens per sequence (encode)", default=128, axis="sequence lengths",
              sweep_flag=True, group=_FORWARD, in_sustain=False),
    Parameter("resolution", "workload.resolution", ("--resolution",), "int",
              "image height = width, pixels (classify)", default_text="the model's own",
              axis="resolutions", sweep_flag=True, group=_FORWARD, in_sustain=False),
    Parameter("n_prompt", "workload.n_prompt", ("-p", "--n-prompt"), "int",
              "prompt tokens per request", default=512, axis="prompt lengths", sweep_flag=True),
    Parameter("n_gen", "workload.n_gen", ("-n", "--n-gen"), "int",
              "generated tokens per request", default=128, axis="generation lengths",
              sweep_flag=True),
    Parameter("n_depth", "workload.n_depth", ("-d", "--n-depth"), "int",
              "tokens in the KV cache before the request", default=0, axis="KV depths",
              sweep_flag=True),
    Parameter("ctx", "engine.ctx", ("-c", "--ctx"), "int", "context size",
              default_text="depth + prompt + gen", axis="context sizes", sweep_flag=True),
    Parameter("batch", "engine.batch", ("-b", "--batch"), "int",
              "prompt batch size, tokens", default=512, axis="batch sizes"),
    Parameter("ubatch", "engine.ubatch", ("--ubatch",), "int", "physical batch size, tokens",
              default_text="--batch", axis="physical batch sizes"),
    Parameter("reps", "workload.reps", ("-r", "--reps"), "int", "timed repetitions",
              default=5, axis="repetitions", sweep_flag=True),
    Parameter("warmup", "workload.warmup", ("--warmup",), "int",
              "untimed warmup repetitions", default=1, axis="warmups", sweep_flag=True),
    Parameter("seed", "workload.seed", ("--seed",), "int", "seed of the synthetic prompt",
              default=0, axis="seeds"),
    Parameter("timing", "workload.timing", ("--timing",), "str",
              "generation: decode includes choosing each token, as an app does; engine: "
              "llama-bench's tg (synthetic next tokens, no sampling; llama.cpp)",
              default="generation", choices=("generation", "engine")),
    Parameter("workload", "workload.kind", ("-w", "--workload"), "str",
              "synthetic: llama-bench's pp/tg token ids; conversation, document, app: "
              "requests on the model's chat template", default="synthetic",
              choices=("synthetic", "conversation", "document", "app"), axis="workloads",
              sweep_flag=True, group=_WORKLOADS, in_sustain=False),
    Parameter("workload_file", "workload.file", ("--workload-file",), "str",
              "conversations (ShareGPT JSON or OpenAI-messages JSONL), a WikiText-2-style "
              "corpus (document) or sensor readings (app)", group=_WORKLOADS, metavar="FILE",
              default_text="the shipped sample set", axis="workload files", sweep_flag=True,
              in_sustain=False),
    Parameter("doc_tokens", "workload.doc_tokens", ("--doc-tokens",), "int",
              "document length, tokens of the model's own tokenizer", default=1024,
              axis="document lengths", sweep_flag=True, group=_WORKLOADS, in_sustain=False),
    Parameter("doc_tasks", "workload.doc_tasks", ("--doc-tasks",), "str",
              "document tasks, comma list", default="summarise,qa,suggest", group=_WORKLOADS,
              metavar="LIST", axis="document task lists", in_sustain=False),
    Parameter("n_docs", "workload.n_docs", ("--n-docs",), "int", "documents per task",
              default=2, axis="documents per task", sweep_flag=True, group=_WORKLOADS,
              in_sustain=False),
    Parameter("max_turns", "workload.max_turns", ("--max-turns",), "int",
              "user turns per conversation, at most", axis="turn limits", sweep_flag=True,
              group=_WORKLOADS, in_sustain=False),
    Parameter("output_len", "workload.output", ("--output-len",), "str",
              "fixed: exactly --n-gen tokens per turn (end of sequence ignored); natural: "
              "stop at the end of the reply, at most --n-gen", choices=("fixed", "natural"),
              default_text="fixed; natural for app", axis="output modes", sweep_flag=True,
              group=_WORKLOADS,
              in_sustain=False),
    Parameter("no_prefix_reuse", "workload.no_prefix_reuse", ("--no-prefix-reuse",), "flag",
              "empty the KV cache before every request (the arm to compare prefix reuse "
              "with)", axis="prefix reuse off (true) / on (false)", sweep_flag=True,
              group=_WORKLOADS, in_sustain=False),
    Parameter("concurrency", "workload.concurrency", ("--concurrency",), "int",
              "sessions in flight at once (server load, openai)", default=1,
              axis="concurrency levels", sweep_flag=True, group=_WORKLOADS, in_sustain=False),
    Parameter("request_rate", "workload.request_rate", ("--request-rate",), "float",
              "session arrivals per second (server load, openai)",
              default_text="inf: all at once, bounded by --concurrency", axis="request rates",
              sweep_flag=True, group=_WORKLOADS, metavar="R", in_sustain=False),
    Parameter("burstiness", "workload.burstiness", ("--burstiness",), "float",
              "gamma shape of the gaps between arrivals: 1 is Poisson, < 1 burstier",
              default=1.0, axis="burstiness values", sweep_flag=True, group=_WORKLOADS,
              in_sustain=False),
    Parameter("num_requests", "workload.num_requests", ("--num-requests",), "int",
              "sessions to send: the set is cycled or cut to this many", axis="request counts",
              sweep_flag=True, group=_WORKLOADS, in_sustain=False),
    Parameter("load_duration_s", "workload.duration_s", ("--load-duration",), "float",
              "stop starting sessions after S seconds (server load)", group=_WORKLOADS,
              metavar="S", axis="load durations", in_sustain=False),
    Parameter("slo", "workload.slo", ("--slo",), "str",
              "goodput's service-level objectives, e.g. ttft_ms=500,tpot_ms=50",
              group=_WORKLOADS, metavar="M=V,...", axis="SLO sets (a sweep file's)",
              in_sustain=False),
    Parameter("timeout_s", "timeout_s", ("--timeout",), "float",
              "kill the worker after this many seconds"),
    Parameter("memory_hz", "sensors.memory_hz", ("--memory-hz",), "float",
              "RSS sampling rate, Hz", default=50.0),
    Parameter("engine_options", "engine.options", ("-o", "--engine-opt"), "option",
              "engine-specific option, repeatable (e.g. n_gpu_layers=99, flash_attn=true)",
              metavar="KEY=VALUE"),
    Parameter("sensors", "sensors.use", ("--sensors",), "list",
              "sensors to use, comma list, or 'none'", group=_SENSORS, metavar="LIST",
              default_text="all available; see meltbench sensors"),
    Parameter("sensor_hz", "sensors.hz", ("--sensor-hz",), "float",
              "energy/temperature/frequency sampling, Hz", default=10.0, group=_SENSORS),
    Parameter("idle_s", "sensors.idle_s", ("--idle",), "float",
              "idle baseline before the run, s", default=2.0, group=_SENSORS, metavar="S"),
    Parameter("sysfs_root", "sensors.root", ("--sysfs-root",), "str",
              "read sysfs under DIR instead of /", default="/", default_text="",
              group=_SENSORS, metavar="DIR"),
    Parameter("cooldown_s", "cooldown.seconds", ("--cooldown",), "float",
              "fixed wait between requests (a sweep: between points), s", default=0.0,
              group=_SENSORS, metavar="S", in_sustain=False),
    Parameter("cooldown_margin_c", "cooldown.margin_c", ("--cooldown-margin",), "float",
              "also wait until the hottest sensor is within C degrees of idle",
              group=_SENSORS, metavar="C", in_sustain=False),
    Parameter("cooldown_timeout_s", "cooldown.timeout_s", ("--cooldown-timeout",), "float",
              "longest temperature wait, s", default=300.0, group=_SENSORS, metavar="S",
              in_sustain=False),
    Parameter("target", "target", ("--target",), "str",
              "where the model runs: local, ssh://[user@]host[:port], adb://SERIAL, or a "
              "name from the targets file", default="local", group="target", metavar="T",
              own_option=False),
)  # fmt: skip

_BY_KEY = {p.key: p for p in PARAMETERS}

SWEEP_AXES: tuple[str, ...] = tuple(p.key for p in PARAMETERS if p.axis is not None)
"""Keys a sweep can vary (a list per key in an experiment file)."""

INT_AXES: tuple[str, ...] = tuple(p.key for p in PARAMETERS if p.axis and p.type == "int")
"""Sweep axes whose values are integers (llama-bench's range syntax applies)."""

SUSTAIN_DEFAULTS: dict[str, int] = {"n_prompt": 64, "n_gen": 256}
"""``meltbench sustain``'s workload: short prompts, long generations, back to back."""


def default(key: str) -> Any:
    """The spec's default of parameter ``key`` (``config.py`` declares its fields with it).

    Raises:
        KeyError: an unknown key.
    """
    return _BY_KEY[key].default


def flat_fields() -> dict[str, tuple[str, str]]:
    """Flat keyword -> (RunSpec section, field), for the nested settings."""
    out = {}
    for p in PARAMETERS:
        if p.path is not None and "." in p.path:
            section, name = p.path.split(".")
            out[p.key] = (section, name)
    return out


def flag_names(kind: str = "cli") -> dict[str, str]:
    """RunSpec path -> the name an error shows: the long CLI flag (``cli``) or the sweep
    file's key (``sweep``)."""
    return {
        p.path: (p.flags[-1] if kind == "cli" and p.flags else p.key)
        for p in PARAMETERS
        if p.path is not None
    }


def parse_engine_option(text: str) -> tuple[str, Any]:
    """One ``-o KEY=VALUE``: the value as JSON when it parses (``true``, ``99``,
    ``"q8_0"``), else the text. Raises ``argparse.ArgumentTypeError`` without ``=``."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float}


def add_run_options(
    parser: argparse.ArgumentParser,
    *,
    sustain: bool = False,
    groups: dict[str, Any] | None = None,
) -> None:
    """The run (or sustain) options of :data:`PARAMETERS`, with their help and default.

    Args:
        parser: the subcommand's parser.
        sustain: the ``sustain`` command (its defaults are :data:`SUSTAIN_DEFAULTS`).
        groups: argument groups by title, created on first use (shared with the caller
            so that its own options join the same sections).
    """
    groups = groups if groups is not None else {}
    for p in PARAMETERS:
        if not p.flags or p.path is None or not p.own_option or (sustain and not p.in_sustain):
            continue
        where = parser
        if p.group is not None:
            if p.group not in groups:
                groups[p.group] = parser.add_argument_group(p.group)
            where = groups[p.group]
        value = SUSTAIN_DEFAULTS.get(p.key) if sustain else None
        kwargs: dict[str, Any] = {"dest": p.dest, "help": p.help_text(value)}
        if p.type == "flag":
            kwargs.update(action="store_true", default=None)
        elif p.type == "option":
            kwargs.update(type=parse_engine_option, action="append")
        elif p.type in _TYPES:
            kwargs["type"] = _TYPES[p.type]
        if p.metavar:
            kwargs["metavar"] = p.metavar
        if p.choices:
            kwargs["choices"] = p.choices
        where.add_argument(*p.flags, **kwargs)


def add_sweep_list_options(parser: argparse.ArgumentParser) -> None:
    """One ``LIST`` option per sweep axis that the command line takes (``-p 128,512``)."""
    for p in PARAMETERS:
        if p.sweep_flag:
            parser.add_argument(
                *p.flags, dest=p.key, metavar="LIST", help=f"{p.axis} (comma list/range)"
            )


def options_from_args(args: argparse.Namespace, keys: Iterable[str] | None = None) -> dict:
    """Flat keywords for :func:`meltbench.api.build_spec` from parsed run options (absent
    options and None values left out; ``--engine-opt`` pairs become a dict; ``--sensors``
    a tuple of names, ``none`` an empty one)."""
    out: dict[str, Any] = {}
    for p in PARAMETERS:
        if p.path is None or not p.flags or (keys is not None and p.key not in keys):
            continue
        value = getattr(args, p.dest, None)
        if value is None:
            continue
        if p.type == "option":
            value = dict(value) if value else None
        elif p.type == "list":
            value = sensor_names(value)
        out[p.key] = value
    return out


def sensor_names(text: str | None) -> tuple[str, ...] | None:
    """``--sensors`` as names: a comma list, ``none`` (or an empty list) for no sensor,
    None when not given (every available sensor)."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    return () if names in ((), ("none",)) else names
