"""The stored form of a run (schema version 5).

A :class:`RunResult` is what ``meltbench.run`` returns, what the SQLite store holds and
what ``--format json`` prints. It keeps the fully resolved spec, the environment, every
raw timestamp of every repetition (warmup included), the summaries derived from them
and the warnings. ``schema_version`` changes whenever a field changes meaning;
:func:`RunResult.model_validate` rejects unknown versions.

Metric names, units, directions and definitions: the catalogue, :mod:`meltbench.metrics`
(``ttft_ms``, ``prefill_tps``, ``decode_tps``, ``itl_ms``, ... and the energy families
per window).

Since version 3 (decode roofline): ``kv_cache_bytes`` (the engine's figure, else the
formula's), ``bytes_per_token`` (weights + KV read per decoded token),
``decode_bound_tps`` (bandwidth / bytes_per_token), ``decode_efficiency``
(decode_tps / decode_bound_tps) and ``sample_ms`` (time to choose one token).

Versions: 1 (first release); 2 added ``sensors``, ``device_state``, ``sustain``,
``accuracy`` and ``Repetition.cooldown``; 3 added ``roofline``; 4 added ``requests`` (a
request workload: conversations, documents, the app, server load); 5 added ``forward`` (a
forward task: ``--task encode``/``classify``, its inputs and output check) and
``Repetition.t_end_ns`` (a pass's end). Older results read as version 5 with the new
fields empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from meltbench.config import RunSpec
from meltbench.measure.stats import Summary

if TYPE_CHECKING:
    from meltbench.results.identity import RunIdentity

__all__ = ["SCHEMA_VERSION", "Repetition", "RunResult"]

SCHEMA_VERSION = 5
_READABLE_VERSIONS = (1, 2, 3, 4, 5)


class Repetition(BaseModel):
    """Raw record of one request.

    Attributes:
        index: position in the run (warmup first).
        kind: ``warmup`` (untimed, not summarized) or ``timed``.
        t_start_ns: request start, ns (``perf_counter_ns`` of the worker).
        token_ns: when each generated token was available, ns (empty for a forward pass).
        t_end_ns: a forward pass's end (``encode``, ``classify``): outputs back on the
            host, ns; None for text generation.
        tokens: the generated token ids.
        counters: the engine's own counters for this request, if it has any.
        depth_fill_ns: time to fill the KV cache to ``n_depth`` before the request.
        cooldown: the wait before this request, if a cool-down rule was set (mode,
            waited_s, start/end/idle/target temperatures in C, reached, reason).
    """

    model_config = ConfigDict(extra="forbid")

    index: int
    kind: Literal["warmup", "timed"]
    t_start_ns: int
    token_ns: list[int]
    tokens: list[int]
    counters: dict[str, float] | None = None
    depth_fill_ns: int | None = None
    cooldown: dict[str, Any] | None = None
    t_end_ns: int | None = None


class RunResult(BaseModel):
    """One run: configuration, environment, raw samples, summaries, status.

    Attributes:
        run_id: unique id (32 hex digits).
        status: ``ok`` or ``failed`` (then ``failure`` says why, in one line).
        started_at, finished_at: ISO 8601 UTC timestamps.
        test: llama-bench label, e.g. ``pp512+tg128``.
        spec: the run specification as given (validated).
        settings: what the engine was actually given (threads, n_ctx, batch, ...).
        model: model facts (alias, path, GGUF header: name, quant, n_params, size).
        engine: the engine's own description (version, system info, ...).
        target: where the model ran (``local``).
        environment: machine and software (see ``meltbench.environment``).
        metrics: summaries by metric name, over the timed repetitions.
        cold: metrics of the very first request (warmup 0, or timed 0 if no warmup).
        fidelity: our tok/s divided by the engine's own counters (ratios of medians).
        memory: RSS sampling details (peak sampled, kernel high-water mark, rate).
        warnings: typed warnings (code, message, advice, metric).
        profile: per-operator-category breakdown of one extra request (``--profile``):
            ``categories_ms``, ``ops``, ``source``; None when not asked for.
        repetitions: raw records of every request, warmup included.
        sensors: what the sensors saw: ``hz``, ``probes`` (every sensor with its status
            and reason), ``idle`` baseline (seconds, power_w, temperatures), the energy
            ``method`` and ``energy_channels``, ``temp_max_c`` per channel, and the raw
            ``series`` (timestamps on the worker's clock, values per channel).
        device_state: battery level, charging, power source, governor, power mode
            (Jetson nvpmodel), read before the run; None values = not exposed.
        sustain: for ``meltbench sustain``: the time series of decode tok/s,
            temperature, frequency and power, and the throttling verdict.
        accuracy: for ``meltbench eval`` and quantization studies: corpus, method,
            token counts, the reference compared against, lm-eval task results.
        roofline: for GGUF models: weights and KV bytes read per decoded token, the
            mean number of cached tokens they were computed at, whether embeddings are
            tied, and the memory bandwidth used as the roof (bytes/s, kernel, threads,
            where and when it was measured); None for other models.
        requests: for a request workload (:mod:`meltbench.workloads`): ``workload``
            (kind, name, version, output mode, prefix reuse, how it was built),
            ``template`` (the chat template used and any fallback warning), ``load``
            (concurrency, arrivals, throughput, goodput against the SLOs), ``groups``
            (the per-group/per-turn table: summaries as dicts), ``app`` (answers
            parsed and right) and ``records`` (every request: timestamps, token counts,
            the reply text); None for a synthetic run.
        forward: for a forward task (``encode``, ``classify``): ``task``, ``inputs``
            (shapes, dtypes, SHA-256), ``output_check`` (max abs difference and tolerance
            ratio against PyTorch eager on the same weights and inputs, match),
            ``prepare`` (build/export times, whether from cache, versions) and
            ``items_per_pass``; None otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: Literal["ok", "failed"]
    failure: str | None = None
    started_at: str
    finished_at: str
    test: str
    spec: RunSpec
    settings: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    engine: dict[str, Any] = Field(default_factory=dict)
    target: str = "local"
    environment: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Summary] = Field(default_factory=dict)
    cold: dict[str, float | None] = Field(default_factory=dict)
    fidelity: dict[str, float | None] = Field(default_factory=dict)
    memory: dict[str, Any] = Field(default_factory=dict)
    warnings: list[dict[str, str | None]] = Field(default_factory=list)
    profile: dict[str, Any] | None = None
    repetitions: list[Repetition] = Field(default_factory=list)
    sensors: dict[str, Any] = Field(default_factory=dict)
    device_state: dict[str, Any] = Field(default_factory=dict)
    sustain: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    roofline: dict[str, Any] | None = None
    requests: dict[str, Any] | None = None
    forward: dict[str, Any] | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value in (1, 2, 3, 4):
            return SCHEMA_VERSION  # versions 2 to 5 only added fields with empty defaults
        if value not in _READABLE_VERSIONS:
            raise ValueError(
                f"result schema version {value} is not supported by this meltbench "
                f"(version {SCHEMA_VERSION}); upgrade meltbench"
            )
        return value

    @property
    def ok(self) -> bool:
        """True if the run completed."""
        return self.status == "ok"

    def identity(self) -> RunIdentity:
        """The configuration this run measured (:class:`meltbench.results.identity.RunIdentity`):
        the one identity that compare, the report, scaling fits and sweeps group by."""
        from meltbench.results.identity import RunIdentity

        return RunIdentity.of(self)

    def median(self, name: str) -> float | None:
        """Median of metric ``name``, or None if it was not measured."""
        summary = self.metrics.get(name)
        return summary.median if summary is not None else None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the whole result (raw samples included)."""
        return self.model_dump(mode="json")
