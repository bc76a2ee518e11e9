"""The client side of server load: replaying a request set against an OpenAI-compatible
server, sessions dispatched on an arrival schedule with at most ``concurrency`` in flight
(as vLLM's ``vllm bench serve --request-rate --max-concurrency`` and AIPerf do).

Each turn is one streamed ``POST {endpoint}/chat/completions`` with the session's history
(the system message, earlier user turns and the server's own replies) and
``stream_options.include_usage``, so token counts come from the server's ``usage``
(``prompt_tokens``, ``completion_tokens``, ``prompt_tokens_details.cached_tokens``), never
from counting chunks. ``fixed`` output also sends ``ignore_eos`` and ``min_tokens``
(vLLM's and llama.cpp server's extensions; a server that ignores them may stop early,
which the run's warnings report). A reply that ends at once (end of sequence first, no
text) is a completed request without a first token: no TTFT, ``n_output`` from usage or
the counter (0).

A failed request (HTTP error, refused connection, timeout, a malformed stream) is a record
with ``ok`` False and its error in one line; the rest of that session is not sent (and not
recorded); other sessions go on.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from meltbench.engines.openai_http import redact_url
from meltbench.workloads.base import DOCUMENT_SLOT, RequestSet, Session

__all__ = ["replay_http", "server_token_counter"]

Record = dict[str, Any]


def _connection(endpoint: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(endpoint)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    return conn, parts.path.rstrip("/")


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _first_model(endpoint: str, api_key: str | None, timeout_s: float) -> str:
    conn, path = _connection(endpoint, timeout_s)
    try:
        conn.request("GET", f"{path}/models", headers=_headers(api_key))
        answer = conn.getresponse()
        data = json.loads(answer.read() or b"{}")
        models = data.get("data") or []
        return str(models[0]["id"]) if models else "default"
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        return "default"
    finally:
        conn.close()


def server_token_counter(
    endpoint: str, api_key: str | None, timeout_s: float = 30.0
) -> Callable[[str], int] | None:
    """A counter of text tokens by the server's own tokenizer route (llama.cpp server's
    ``/tokenize``, llama-cpp-python's ``/extras/tokenize``), less what it adds to the
    empty text (BOS); None when the server has neither route."""
    from meltbench.engines.openai_http import server_root

    root = server_root(endpoint)

    def post(route: str, text: str) -> int:
        conn, _ = _connection(root, timeout_s)
        try:
            body = json.dumps({"input": text, "content": text}).encode()
            conn.request("POST", route, body=body, headers=_headers(api_key))
            answer = conn.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise LookupError(route)
            return len(json.loads(data)["tokens"])
        finally:
            conn.close()

    for route in ("/extras/tokenize", "/tokenize"):
        try:
            base = post(route, "")
        except (OSError, LookupError, ValueError, KeyError, http.client.HTTPException):
            continue
        return lambda text, route=route, base=base: post(route, text) - base
    return None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def _stream_turn(
    endpoint: str,
    body: dict[str, Any],
    api_key: str | None,
    timeout_s: float,
    record: Record,
) -> None:
    """Send one streamed request; fill ``record`` (times, text, usage, stop)."""
    conn, path = _connection(endpoint, timeout_s)
    token_ns: list[int] = []
    text: list[str] = []
    usage: dict[str, Any] | None = None
    finish = None
    try:
        payload = json.dumps(body).encode()
        record["t_sent_ns"] = time.perf_counter_ns()
        conn.request("POST", f"{path}/chat/completions", body=payload, headers=_headers(api_key))
        answer = conn.getresponse()
        if answer.status != 200:
            detail = _one_line(answer.read(400).decode("utf-8", errors="replace"))
            raise RuntimeError(f"HTTP {answer.status} {answer.reason}: {detail}")
        for raw in answer:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    token_ns.append(time.perf_counter_ns())
                    text.append(piece)
                finish = choice.get("finish_reason") or finish
        record["t_end_ns"] = time.perf_counter_ns()
    finally:
        conn.close()
    if not token_ns and finish is None and usage is None:
        raise RuntimeError("the stream ended without text, finish_reason or usage")
    details = (usage or {}).get("prompt_tokens_details") or {}
    record.update(
        ok=True,
        token_ns=token_ns,
        n_input=(usage or {}).get("prompt_tokens"),
        n_cached=details.get("cached_tokens"),
        n_output=(usage or {}).get("completion_tokens"),
        stop={"stop": "eos", "length": "length"}.get(str(finish), None),
        text="".join(text),
        counts="usage" if usage else "none",
    )


def replay_http(
    requests: RequestSet,
    *,
    endpoint: str,
    model: str | None,
    concurrency: int = 1,
    arrivals: Sequence[float] | None = None,
    duration_s: float | None = None,
    timeout_s: float = 600.0,
    api_key: str | None = None,
    cut_document: Callable[[str, int], str] | None = None,
    extra_body: dict[str, Any] | None = None,
    on_record: Callable[[Record], None] | None = None,
    count_text: Callable[[str], int] | None = None,
) -> list[Record]:
    """Replay ``requests`` against ``endpoint`` (a base URL ending in ``/v1``).

    Args:
        requests: the sessions; each session's turns are sent in order on its history.
        model: the body's ``model``; None asks ``GET /v1/models`` for the first id.
        concurrency: most sessions in flight at once (>= 1).
        arrivals: per-session earliest start, seconds after the run starts (see
            :func:`meltbench.workloads.arrivals.arrival_times`); None: as fast as
            ``concurrency`` allows.
        duration_s: start no session after this many seconds.
        timeout_s: per request (connect and each read), s.
        api_key: sent as ``Authorization: Bearer``; never recorded.
        cut_document: ``(text, n_tokens) -> text`` for turns with a document.
        extra_body: merged into every request body.
        on_record: called with each record as it completes (from worker threads, one
            at a time).
        count_text: for a server whose stream carries no ``usage`` (llama-cpp-python's
            chat completions): counts the reply's tokens (:func:`server_token_counter`);
            ``n_output`` is then that count (the end-of-generation token not included),
            ``n_input`` unknown (the server applies its template), ``counts``
            ``server-tokenizer``.

    Returns:
        One record per sent turn, sorted by ``t_start_ns``: ``session``, ``turn``,
        ``group``, ``ok``, ``error``, ``t_scheduled_ns`` (turn 0 only), ``t_start_ns``,
        ``t_sent_ns``, ``token_ns`` (each chunk that carried text), ``chunk_tokens``
        (None: unknown per chunk), ``t_end_ns``, ``n_input``, ``n_cached``, ``n_output``
        (the server's usage), ``stop``, ``text``, ``counts``.

    Raises:
        ValueError: ``concurrency < 1``, ``arrivals`` not one per session, a document
            turn without ``cut_document``.
    """
    sessions = list(requests.sessions)
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if arrivals is not None and len(arrivals) != len(sessions):
        raise ValueError(f"{len(arrivals)} arrival times for {len(sessions)} sessions")
    if cut_document is None and any(t.document for s in sessions for t in s.turns):
        raise ValueError("document turns need cut_document (the model's tokenizer)")
    name = model or _first_model(endpoint, api_key, timeout_s)
    fixed = requests.output == "fixed"
    records: list[Record] = []
    lock = threading.Lock()
    slots = threading.Semaphore(concurrency)
    t0 = time.perf_counter_ns()
    deadline = None if duration_s is None else t0 + int(duration_s * 1e9)

    def emit(record: Record) -> None:
        with lock:
            records.append(record)
            if on_record is not None:
                on_record(record)

    def run_session(session: Session, scheduled: int | None) -> None:
        try:
            history: list[dict[str, str]] = []
            if session.system:
                history.append({"role": "system", "content": session.system})
            for index, turn in enumerate(session.turns):
                record: Record = {
                    "session": session.id, "turn": index, "group": session.group,
                    "ok": False, "error": None,
                    "t_scheduled_ns": scheduled if index == 0 else None,
                    "t_start_ns": time.perf_counter_ns(), "t_sent_ns": None, "token_ns": [],
                    "chunk_tokens": None, "t_end_ns": None, "n_input": None,
                    "n_cached": None, "n_output": None, "stop": None, "text": "",
                    "counts": "none",
                }  # fmt: skip
                user = turn.user
                if turn.document is not None and cut_document is not None:
                    user = user.replace(
                        DOCUMENT_SLOT, cut_document(turn.document, int(turn.document_tokens or 0))
                    )
                messages = [*history, {"role": "user", "content": user}]
                body: dict[str, Any] = {
                    "model": name, "messages": messages, "max_tokens": turn.max_tokens,
                    "stream": True, "stream_options": {"include_usage": True},
                    "temperature": 0,
                }  # fmt: skip
                if fixed:
                    body.update(ignore_eos=True, min_tokens=turn.max_tokens)
                body.update(extra_body or {})
                try:
                    _stream_turn(endpoint, body, api_key, timeout_s, record)
                except Exception as exc:  # a server failure is data, not a crash
                    record["t_end_ns"] = record["t_end_ns"] or time.perf_counter_ns()
                    message = _one_line(f"{type(exc).__name__}: {exc}")
                    record["error"] = message.replace(endpoint, redact_url(endpoint))
                    emit(record)
                    return
                if record["counts"] == "none" and count_text is not None:
                    try:
                        record["n_output"] = count_text(record["text"])
                        record["counts"] = "server-tokenizer"
                    except Exception:  # counting is best effort; the reply stands
                        pass
                emit(record)
                history += [{"role": "user", "content": user},
                            {"role": "assistant", "content": record["text"]}]  # fmt: skip
        finally:
            slots.release()

    threads = []
    for i, session in enumerate(sessions):
        scheduled = None
        if arrivals is not None:
            scheduled = t0 + int(arrivals[i] * 1e9)
            wait = (scheduled - time.perf_counter_ns()) / 1e9
            if wait > 0:
                time.sleep(wait)
        if deadline is not None and time.perf_counter_ns() >= deadline:
            break
        slots.acquire()
        thread = threading.Thread(target=run_session, args=(session, scheduled), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return sorted(records, key=lambda r: r["t_start_ns"])
