"""Request workloads in the Python surface: checking one against its engine, and running
one against an OpenAI-compatible server from this machine (server load).

:func:`meltbench.api.prepare` calls :func:`check_request_workload` (or
:func:`refuse_load_options` for a synthetic run); :func:`meltbench.api.execute` calls
:func:`execute_http` for the HTTP engines, and the worker replays the requests for the
others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from meltbench.errors import UsageError
from meltbench.workloads.base import RequestSet

if TYPE_CHECKING:
    from meltbench.api import PreparedRun
    from meltbench.config import RunSpec
    from meltbench.results.schema import RunResult

__all__ = ["HTTP_ENGINES", "check_request_workload", "execute_http", "refuse_load_options"]

EventCallback = Callable[[dict[str, Any]], None]

#: engines that replay request workloads over HTTP on the host (server load)
HTTP_ENGINES = ("openai",)


def refuse_load_options(spec: RunSpec) -> None:
    """Request-workload options on a synthetic run are usage errors."""
    w = spec.workload
    given = [
        flag
        for flag, value in (
            ("--concurrency", w.concurrency > 1),
            ("--request-rate", w.request_rate is not None),
            ("--num-requests", w.num_requests is not None),
            ("--load-duration", w.duration_s is not None),
            ("--slo", w.slo is not None),
            ("--no-prefix-reuse", w.no_prefix_reuse),
            ("--output-len", w.output is not None),
        )
        if value
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} apply to request workloads; add --workload conversation, "
            "document or app"
        )


def check_request_workload(spec: RunSpec, engine_cls: Any, kind: str) -> RequestSet:
    """Check a request workload against its engine and build its requests.

    Raises:
        UsageError: an engine without text methods, settings that make no sense for
            requests, server-load options on a local engine, bad SLOs, a bad file.
    """
    from meltbench.measure.goodput import parse_slo
    from meltbench.workloads.build import request_set

    w, name = spec.workload, engine_cls.name
    http = name in HTTP_ENGINES
    if not http and not getattr(engine_cls, "supports_text", False):
        raise UsageError(
            f"engine {name!r} cannot replay --workload {w.kind} yet (it has no tokenizer "
            "and chat template interface); use -e llama.cpp, or -e openai against a server"
        )
    if kind == "adb":
        raise UsageError("adb targets run llama-bench: request workloads need ssh or local")
    if w.timing == "engine":
        raise UsageError("--timing engine is synthetic tokens; request workloads generate text")
    if w.n_depth or spec.profile:
        raise UsageError("--n-depth and --profile are synthetic pp/tg options; drop them")
    if not http and (w.concurrency > 1 or w.request_rate is not None or w.duration_s):
        raise UsageError(
            "--concurrency, --request-rate and --load-duration are server load: use -e openai "
            f"--endpoint URL (engine {name!r} serves one request at a time)"
        )
    if http and kind != "local":
        raise UsageError("server load runs from this machine: drop --target")
    if w.slo:
        parse_slo(w.slo)
    return request_set(w)


def execute_http(prepared: PreparedRun, on_event: EventCallback | None) -> tuple[RunResult, bool]:
    """A request workload against an OpenAI-compatible server, from this machine
    (:func:`meltbench.harness.http_load.replay_http`): sessions dispatched at
    ``--request-rate`` arrivals, at most ``--concurrency`` in flight.

    Raises:
        UsageError: a document workload without ``-o tokenizer=`` (the cut to exact
            token counts needs the model's tokenizer).
    """
    from meltbench.engines.openai_options import DEFAULT_API_KEY_ENV
    from meltbench.harness.http_load import replay_http, server_token_counter
    from meltbench.results.assemble import request_result
    from meltbench.timestamps import utc_now
    from meltbench.workloads.arrivals import arrival_times

    spec, requests = prepared.spec, prepared.requests
    assert requests is not None
    w, opts = spec.workload, prepared.settings.options
    cut = None
    if requests.kind == "document":
        if not opts.get("tokenizer"):
            raise UsageError(
                "a document workload against a server needs the model's tokenizer to cut "
                "documents to exact lengths: add -o tokenizer=PATH (GGUF or HF folder)"
            )
        from meltbench.engines.openai_prompts import open_client_tokenizer
        from meltbench.workloads.build import cut_with_counter

        counter = open_client_tokenizer(str(opts["tokenizer"]))
        cut = cut_with_counter(counter.count)
    arrivals = None
    if w.request_rate is not None:
        arrivals = arrival_times(
            len(requests.sessions), w.request_rate, burstiness=w.burstiness, seed=w.seed
        )
    records: list[dict[str, Any]] = []
    api_key = os.environ.get(str(opts.get("api_key_env", DEFAULT_API_KEY_ENV))) or None

    def keep(record: dict[str, Any]) -> None:
        records.append(record)
        if on_event is not None:
            on_event({"event": "request", "record": record})

    started, failure, interrupted = utc_now(), None, False
    try:
        replay_http(
            requests,
            endpoint=str(prepared.settings.endpoint),
            model=spec.model.ref,
            concurrency=w.concurrency,
            arrivals=arrivals,
            duration_s=w.duration_s,
            timeout_s=spec.timeout_s or 600.0,
            api_key=api_key,
            cut_document=cut,
            on_record=keep,
            count_text=server_token_counter(str(prepared.settings.endpoint), api_key),
        )
    except KeyboardInterrupt:
        failure, interrupted = "interrupted by the user (Ctrl-C)", True
    for record in records:
        record.setdefault("kind", "timed")
    result = request_result(
        prepared,
        sorted(records, key=lambda r: r.get("t_start_ns") or 0),
        {"source": "server", "warning": None},
        failure=failure,
        started_at=started,
        finished_at=utc_now(),
        engine={"name": prepared.engine, "endpoint": prepared.settings.endpoint},
        environment=None,
    )
    return result, interrupted
