"""Validated, frozen benchmark specifications.

A :class:`RunSpec` is everything needed to repeat a measurement: which model, which
engine with which settings, which workload, which sensors. Specs are immutable
(pydantic ``frozen``) and round-trip through JSON (``model_dump(mode="json")`` /
``model_validate``), which is how the host hands a job to the worker process and how the
run is stored.

Defaults follow llama-bench: ``n_prompt=512``, ``n_gen=128``, ``reps=5``, context size
``n_depth + n_prompt + n_gen``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from meltbench.errors import UsageError
from meltbench.parameters import default

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_MODEL",
    "CooldownSpec",
    "EngineSpec",
    "ModelSpec",
    "RunSpec",
    "SensorSpec",
    "WorkloadSpec",
    "usage_error_from",
]

DEFAULT_MODEL: str = default("model")
DEFAULT_ENGINE: str = default("engine")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Frozen):
    """Which model to load.

    Attributes:
        ref: a registered alias (see ``meltbench.models.resolve.ALIASES``; default
            ``gemma3-270m-q4_k_m``), a path (a GGUF file, a Hugging Face folder, an ONNX
            Runtime GenAI folder), the model name on a server (``openai`` engine), or,
            with ``weights="random"``, an architecture preset or a ``config.json``.
        weights: ``pretrained`` (load the weights) or ``random`` (build the architecture
            from its config with random weights: latency and memory without a download).
    """

    ref: str = Field(default=DEFAULT_MODEL, min_length=1)
    weights: Literal["pretrained", "random"] = "pretrained"


class EngineSpec(_Frozen):
    """Which inference engine, and its settings.

    Attributes:
        name: registered engine name (``llama.cpp``).
        threads: CPU threads for decode and prefill; ``None`` = physical cores of the
            target (llama-bench's default).
        ctx: context size in tokens; ``None`` = n_depth + n_prompt + n_gen.
        batch: logical batch size for prompt processing, tokens (llama.cpp ``n_batch``).
        ubatch: physical batch size, tokens (llama.cpp ``n_ubatch``); ``None`` = batch.
        dtype: weights/compute type for engines that take one (``float32``,
            ``bfloat16``, ``float16``, ``int4``); ``None`` = the engine's default.
        device: ``cpu``, ``cuda``, ``mps``...; ``None`` = the engine's default.
        endpoint: base URL of an OpenAI-compatible server (``openai`` engine).
        options: engine-specific extra settings, passed through unchanged.
    """

    name: str = Field(default=DEFAULT_ENGINE, min_length=1)
    threads: int | None = Field(default=None, ge=1)
    ctx: int | None = Field(default=None, ge=1)
    batch: int = Field(default=default("batch"), ge=1)
    ubatch: int | None = Field(default=None, ge=1)
    dtype: str | None = Field(default=None, min_length=1)
    device: str | None = Field(default=None, min_length=1)
    endpoint: str | None = Field(default=None, min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


#: tokens a document task's prompt holds besides the document (template, instruction)
REQUEST_OVERHEAD_TOKENS = 256
#: default context of a conversation or app run, tokens
REQUEST_CTX = 4096


class WorkloadSpec(_Frozen):
    """A synthetic llama-bench-style workload: ``pp{n_prompt}+tg{n_gen}@d{n_depth}``.

    Attributes:
        n_prompt: prompt tokens processed per request (synthetic, seeded ids).
        n_gen: tokens generated per request (greedy, end-of-sequence ignored).
        n_depth: tokens already in the KV cache before the timed request (untimed fill).
        reps: timed repetitions.
        warmup: untimed repetitions before the timed ones (the first is kept as "cold").
        seed: seed of the synthetic prompt and depth tokens.
        timing: what a decode step includes. ``generation`` (default): choosing the next
            token (greedy argmax over the logits), as an app does. ``engine``:
            llama-bench's ``tg``: the engine's forward pass only, with synthetic next
            tokens and no sampling, to reproduce a llama-bench table. Either way the
            cost of choosing a token is reported as ``sample_ms``.
        kind: ``synthetic`` (the above), or a request workload replayed on the model's
            chat template (:mod:`meltbench.workloads`): ``conversation`` (``file``: a
            ShareGPT JSON or OpenAI-messages JSONL; default the shipped sample),
            ``document`` (summarise/qa/suggest over documents of exactly ``doc_tokens``
            tokens from ``file``, a WikiText-2-style corpus), ``app`` (sensor readings in,
            a JSON answer out, parsed). ``n_gen`` is then each turn's most output tokens
            and ``reps`` the passes over the set.
        doc_tasks, n_docs: the document tasks (comma list) and documents per task.
        max_turns: user turns per conversation, at most (None: all).
        output: ``fixed`` (exactly ``n_gen`` tokens, end of sequence ignored) or
            ``natural`` (stop at the end of the reply); None: :attr:`output_mode`.
        no_prefix_reuse: empty the KV cache before every request instead of keeping the
            common prefix (compare the two arms).
        concurrency, request_rate, burstiness, num_requests, duration_s, slo: server load
            (the openai engine): sessions in flight at once; arrivals per second (None:
            all at once) with gamma-distributed gaps of shape ``burstiness`` (1: a Poisson
            process, vLLM's ``--burstiness``); how many sessions to send (the set cycled
            or cut); when to stop starting sessions, s; goodput's SLOs
            (``ttft_ms=500,tpot_ms=50``, :func:`meltbench.measure.goodput.parse_slo`).
        task: ``generate`` (all of the above), or a forward task of
            :mod:`meltbench.forward`: ``encode`` (``batch_size`` sequences of ``seq_len``
            seeded token ids through an encoder) or ``classify`` (``batch_size`` seeded
            images of ``resolution`` x ``resolution`` pixels through a vision model;
            None: the model's own resolution). ``reps`` and ``warmup`` count forward
            passes; the n_prompt/n_gen/request fields do not apply.
    """

    n_prompt: int = Field(default=default("n_prompt"), ge=1)
    n_gen: int = Field(default=default("n_gen"), ge=1)
    n_depth: int = Field(default=default("n_depth"), ge=0)
    reps: int = Field(default=default("reps"), ge=1)
    warmup: int = Field(default=default("warmup"), ge=0)
    seed: int = Field(default=default("seed"), ge=0)
    timing: Literal["generation", "engine"] = default("timing")
    kind: Literal["synthetic", "conversation", "document", "app"] = default("workload")
    file: str | None = None
    doc_tokens: int = Field(default=default("doc_tokens"), ge=1)
    doc_tasks: str = default("doc_tasks")
    n_docs: int = Field(default=default("n_docs"), ge=1)
    max_turns: int | None = Field(default=None, ge=1)
    output: Literal["fixed", "natural"] | None = None
    no_prefix_reuse: bool = False
    concurrency: int = Field(default=default("concurrency"), ge=1)
    request_rate: float | None = Field(default=None, gt=0)
    burstiness: float = Field(default=default("burstiness"), gt=0)
    num_requests: int | None = Field(default=None, ge=1)
    duration_s: float | None = Field(default=None, gt=0)
    slo: str | None = None
    task: Literal["generate", "encode", "classify"] = default("task")
    batch_size: int = Field(default=default("batch_size"), ge=1)
    seq_len: int = Field(default=default("seq_len"), ge=1)
    resolution: int | None = Field(default=None, ge=1)

    @property
    def forward(self) -> bool:
        """True for a forward task (``encode``, ``classify``): one pass per repetition."""
        return self.task != "generate"

    @property
    def requests(self) -> bool:
        """True for a request workload (conversation, document, app), not synthetic."""
        return self.kind != "synthetic"

    @property
    def output_mode(self) -> str:
        """``output`` or its default: ``natural`` for the app, ``fixed`` otherwise."""
        return self.output or ("natural" if self.kind == "app" else "fixed")

    @property
    def n_ctx_needed(self) -> int:
        """Tokens the KV cache must hold: n_depth + n_prompt + n_gen (synthetic); the
        document, its task and template (256 tokens allowed) and n_gen (document); 4096
        for a conversation or the app (their prompts are known only once templated)."""
        if self.kind == "document":
            return self.doc_tokens + REQUEST_OVERHEAD_TOKENS + self.n_gen
        if self.requests:
            return REQUEST_CTX
        return self.n_depth + self.n_prompt + self.n_gen

    @property
    def label(self) -> str:
        """llama-bench test label, e.g. ``pp512+tg128`` or ``pp512+tg128@d4096``; a
        request workload's is its kind (the run's ``test`` names the set and version); a
        forward task's ``encode-b{batch}-s{seq_len}`` or ``classify-b{batch}-r{resolution}``."""
        if self.task == "encode":
            return f"encode-b{self.batch_size}-s{self.seq_len}"
        if self.task == "classify":
            return f"classify-b{self.batch_size}" + (
                f"-r{self.resolution}" if self.resolution else ""
            )
        if self.requests:
            return self.kind
        label = f"pp{self.n_prompt}+tg{self.n_gen}"
        return f"{label}@d{self.n_depth}" if self.n_depth else label


class SensorSpec(_Frozen):
    """Sensor settings.

    Attributes:
        memory_hz: sampling rate of the worker's resident memory, Hz (> 0, <= 1000).
            Default 50: on a 2-core machine running 2 llama.cpp threads, sampling at
            100 Hz lowered prefill and decode tok/s by about 3%, 50 Hz by no measurable
            amount (benchmarks/overhead.py). The kernel's high-water mark gives the
            exact peak whatever the rate.
        hz: sampling rate of the energy, power, temperature and frequency sensors, Hz
            (> 0, <= 100; default 10). Raise it for short windows: at 10 Hz a prefill
            shorter than 100 ms falls between two readings and its energy is
            interpolated.
        use: sensor names to use (see ``meltbench sensors``); None = every sensor that
            is available on the target; an empty tuple = none.
        idle_s: seconds of idle baseline measured before the worker starts (only when an
            energy, power or temperature sensor is available); its average power is
            subtracted for the ``_net`` energies. 0 = no baseline (no ``_net`` values).
        root: directory that plays the role of ``/`` for sysfs reads (default ``/``;
            a recorded sysfs tree for tests and replays).
    """

    memory_hz: float = Field(default=default("memory_hz"), gt=0, le=1000)
    hz: float = Field(default=default("sensor_hz"), gt=0, le=100)
    use: tuple[str, ...] | None = None
    idle_s: float = Field(default=default("idle_s"), ge=0, le=600)
    root: str = Field(default=default("sysfs_root"), min_length=1)


class CooldownSpec(_Frozen):
    """Cool-down between requests of a run and between the points of a sweep.

    Attributes:
        seconds: fixed wait, seconds (always waited first).
        margin_c: then wait until the hottest temperature sensor is within this many
            degrees Celsius of its idle value (measured in the idle baseline); None =
            no temperature rule. Without a temperature sensor only the fixed wait
            applies, and the record says so.
        timeout_s: longest wait for the temperature rule, seconds.
    """

    seconds: float = Field(default=default("cooldown_s"), ge=0)
    margin_c: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=default("cooldown_timeout_s"), gt=0)

    @property
    def active(self) -> bool:
        """True when there is anything to wait for."""
        return self.seconds > 0 or self.margin_c is not None


class RunSpec(_Frozen):
    """One benchmark configuration: model x engine x workload x sensors.

    Attributes:
        cooldown: wait between repetitions (fixed, or until temperatures recover).
        target: where the model runs: ``local``, ``ssh://[user@]host[:port]``, or a
            name from the targets file (see :mod:`meltbench.targets.config`).
        timeout_s: wall-clock limit for the whole worker (load + all repetitions),
            seconds; ``None`` = no limit.
        profile: after the timed repetitions, run one more request under the engine's
            profiler and store a per-operator-category time breakdown.
        memory_limit_bytes: cap on the worker's address space (``RLIMIT_AS``, Linux
            setrlimit(2)); an allocation beyond it fails inside the engine, so the run is
            stored as failed (out of memory) without disturbing the machine. ``None`` =
            no cap. Note that address space counts mapped model files and thread stacks,
            so it is larger than the resident memory.

    Raises:
        pydantic.ValidationError: on invalid values, including a context too small for
            the workload (convert with :func:`usage_error_from`).
    """

    model: ModelSpec = Field(default_factory=ModelSpec)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    sensors: SensorSpec = Field(default_factory=SensorSpec)
    cooldown: CooldownSpec = Field(default_factory=CooldownSpec)
    target: str = Field(default=default("target"), min_length=1)
    timeout_s: float | None = Field(default=None, gt=0)
    profile: bool = False
    memory_limit_bytes: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ctx_fits_workload(self) -> RunSpec:
        if self.workload.forward:
            if self.workload.requests:
                raise ValueError(
                    f"--task {self.workload.task} feeds synthetic inputs; drop --workload "
                    f"{self.workload.kind}"
                )
            return self  # no KV cache: a forward pass has no context size
        need = self.workload.n_ctx_needed
        if self.workload.kind in ("conversation", "app"):
            return self  # their prompt lengths are known once templated (checked per turn)
        if self.engine.ctx is not None and self.engine.ctx < need and self.workload.requests:
            raise ValueError(
                f"a {self.workload.doc_tokens}-token document, its task and n_gen need "
                f"about {need} tokens; ctx = {self.engine.ctx} is too small: raise --ctx "
                "or shorten --doc-tokens"
            )
        if self.engine.ctx is not None and self.engine.ctx < need:
            raise ValueError(
                f"n_depth + n_prompt + n_gen = {need} tokens does not fit in ctx = "
                f"{self.engine.ctx}; raise ctx to at least {need} or shorten the workload"
            )
        return self

    @property
    def n_ctx(self) -> int:
        """Context size used: ``engine.ctx`` or, by default, what the workload needs."""
        return self.engine.ctx if self.engine.ctx is not None else self.workload.n_ctx_needed


def usage_error_from(err: ValidationError, flags: dict[str, str] | None = None) -> UsageError:
    """Turn a pydantic ``ValidationError`` into a one-line :class:`UsageError`.

    Args:
        err: the validation error (its first problem is reported).
        flags: optional map from a field path such as ``"workload.reps"`` to the CLI flag
            that sets it (``"--reps"``), so the message names what the user typed.
    """
    first = err.errors()[0]
    path = ".".join(str(p) for p in first.get("loc", ()))
    name = (flags or {}).get(path, path)
    msg = str(first.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if not path:  # a whole-model check, e.g. ctx too small for the workload
        return UsageError(msg)
    got = first.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return UsageError(f"{name}: {msg[0].lower()}{msg[1:]}{shown}")
