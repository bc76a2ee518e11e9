"""HTTP helpers of the OpenAI-compatible engine: redacting URLs, the server's root, error
texts, and the token ids of a streamed choice."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "EndpointError",
    "StreamTally",
    "describe_error",
    "local_server_memory",
    "redact_url",
    "request_counters",
    "server_root",
    "status_message",
]

_MAX_MESSAGE = 300


class EndpointError(RuntimeError):
    """A problem with the server or its answers, in one line (no credentials)."""


def redact_url(url: str) -> str:
    """``url`` without user info, query and fragment (where credentials may hide).

    Example: ``http://user:pw@host:8080/v1?key=x`` -> ``http://host:8080/v1``.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def server_root(endpoint: str) -> str:
    """The server's root URL: ``endpoint`` without a trailing ``/v1`` (and ``/``).

    Tokenizer routes live there (``/tokenize``, ``/extras/tokenize``).
    Example: ``http://127.0.0.1:8080/v1/`` -> ``http://127.0.0.1:8080``.
    """
    root = endpoint.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    return None


def _choice_ids(choice: Any) -> list[int]:
    """Token ids a streamed choice carries (``token_ids`` or ``tokens``), else []."""
    extras = getattr(choice, "model_extra", None) or {}
    for key in ("token_ids", "tokens"):
        value = extras.get(key)
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return list(value)
    return []


def status_message(exc: Any, scrub: Callable[[str], str]) -> str:
    """The server's own message of an HTTP error (``error.message``, ``detail``, or the body),
    passed through ``scrub`` (which removes the API key)."""
    body = getattr(exc, "body", None)
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail")
        elif isinstance(error, str):
            message = error
        if message is None:
            message = json.dumps(body)
    elif isinstance(body, str):
        message = body
    if not message:
        response = getattr(exc, "response", None)
        message = getattr(response, "text", "") or getattr(exc, "message", "") or ""
    return scrub(str(message)) or "(no message)"


def describe_error(
    exc: BaseException,
    url: str,
    scrub: Callable[[str], str],
    key_env: str,
    models: Sequence[str],
    timeout_s: float,
    got: int | None = None,
    n: int = 0,
) -> str:
    """One line describing ``exc`` raised while talking to ``url``, with the fix to try.

    Args:
        exc: what the SDK raised.
        url: the endpoint, credentials removed.
        scrub: removes the API key from server text.
        key_env: the variable holding the key (named in 401/403 hints).
        models: the server's model list (named in 404 hints).
        timeout_s: the read timeout (named in timeout hints).
        got: output chunks received so far in a stream (None when no response had
            started); n: the tokens asked for.
    """
    import openai

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        line = f"HTTP {status} from {url}: {status_message(exc, scrub)}"
        if status in (401, 403):
            line += f"; check the API key in ${key_env}"
        elif status == 404:
            line += f"; check --endpoint and --model (server models: {models or '?'})"
        elif status in (400, 422):
            line += (
                "; if it rejects a field meltbench sends, try -o ignore_eos=false or "
                "-o include_usage=false"
            )
        return line
    chain = list(_chain(exc))
    if any(isinstance(e, json.JSONDecodeError) for e in chain):
        bad = next(e for e in chain if isinstance(e, json.JSONDecodeError))
        where = f" after {got} of {n} tokens" if got is not None else ""
        snippet = _one_line(bad.doc, 80)
        return f"malformed stream from {url}{where}: invalid JSON chunk ({bad.msg}): {snippet!r}"
    if any("timeout" in type(e).__name__.lower() for e in chain):
        return (
            f"no answer from {url} within {timeout_s:g} s (timeout); "
            "check the server or raise -o timeout_s=N"
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return f"cannot connect to {url}: connection refused; is the server running?"
    detail = next(
        (str(e) for e in reversed(chain) if str(e) and str(e) != "Connection error."),
        type(exc).__name__,
    )
    connect = any(type(e).__name__ == "ConnectError" for e in chain)
    if connect:
        return f"cannot connect to {url}: {scrub(detail)}; is the server running?"
    if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError):
        where = f" after {got} of {n} tokens" if got is not None else ""
        return f"server reported an error{where} ({url}): {scrub(str(exc))}"
    if got is not None:
        return (
            f"server closed the connection mid-stream after {got} of {n} tokens "
            f"({url}): {scrub(detail)}"
        )
    return f"connection to {url} lost before an answer ({scrub(detail)}); server down?"


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def _peak_rss_bytes(pid: int) -> int | None:
    """``VmHWM`` of ``/proc/<pid>/status`` (Linux): the process's peak resident set."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def local_server_memory(endpoint: str) -> dict[str, Any] | None:
    """The process serving ``endpoint`` when it runs on this machine, and how to read its
    memory; None for a remote host, or when the listening process cannot be seen.

    The server is the process with a listening TCP socket on the endpoint's port
    (``psutil.net_connections``; other users' sockets need privileges on Linux and
    macOS). The client's peak RSS says nothing about the server's, so the engine reads
    this after every request.

    Returns:
        ``{"pid", "name", "read"}``: ``read()`` gives ``server_rss_bytes`` (now) and,
        on Linux, ``server_peak_rss_bytes`` (``VmHWM``: the server's peak since it
        started, model load included), bytes; ``{}`` once the process is gone.
    """
    import psutil

    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if host not in _LOOPBACK:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    pid = next(
        (
            c.pid
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        ),
        None,
    )
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        name = proc.name()
    except psutil.Error:
        return None

    def read() -> dict[str, float]:
        try:
            out = {"server_rss_bytes": float(proc.memory_info().rss)}
        except psutil.Error:
            return {}
        peak = _peak_rss_bytes(pid)
        if peak is not None:  # the kernel updates VmHWM lazily: never below the RSS read
            out["server_peak_rss_bytes"] = float(max(peak, out["server_rss_bytes"]))
        return out

    return {"pid": pid, "name": name, "read": read}


def request_counters(chunks: int, yielded: int, usage: Any, timings: Any) -> dict[str, float]:
    """A request's counters: ``chunks`` and ``yielded`` (counted at the client),
    ``prompt_tokens`` and ``completion_tokens`` (the server's ``usage``, when reported),
    ``server_prompt_n``, ``server_prompt_ms``, ``server_predicted_n``,
    ``server_predicted_ms`` (llama.cpp's ``timings``, when present)."""
    counters: dict[str, float] = {"chunks": float(chunks), "yielded": float(yielded)}
    for key in ("prompt_tokens", "completion_tokens"):
        value = getattr(usage, key, None) if usage is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            counters[key] = float(value)
    if isinstance(timings, dict):
        for key in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms"):
            value = timings.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                counters[f"server_{key}"] = float(value)
    return counters


@dataclass
class StreamTally:
    """What one streamed answer has said so far (``chat``: chat-completion chunks).

    Attributes:
        chunks: chunks with output: text, token ids, or no ``finish_reason`` yet (the
            closing ``finish_reason`` chunk with empty text and a usage-only chunk are
            not output).
        yielded: tokens handed out by :meth:`outputs`.
        usage: the last ``usage`` seen (the final chunk with ``include_usage``), or None.
        timings: llama.cpp's ``timings`` object, or None.
        finish: the ``finish_reason``, once a chunk has one.
    """

    chat: bool = False
    chunks: int = 0
    yielded: int = 0
    usage: Any = None
    timings: Any = None
    finish: str | None = None

    def outputs(self, chunk: Any) -> list[int]:
        """The tokens of one chunk, in order: the ids it carries (``choices[0].token_ids``,
        vLLM's ``return_token_ids``; or ``choices[0].tokens``), else one running chunk
        index (0, 1, 2, ...) per chunk with output; ``[]`` for a chunk without output."""
        extras = getattr(chunk, "model_extra", None) or {}
        self.timings = extras.get("timings", self.timings)
        self.usage = getattr(chunk, "usage", None) or self.usage
        out: list[int] = []
        for choice in getattr(chunk, "choices", None) or ():
            part = getattr(choice, "delta", None) if self.chat else choice
            text = getattr(part, "content" if self.chat else "text", None) or ""
            reason = getattr(choice, "finish_reason", None)
            ids = _choice_ids(choice)
            if reason is not None:
                self.finish = reason
            if not (text or ids or reason is None):
                continue
            self.chunks += 1
            out.extend(ids or [self.chunks - 1])
        self.yielded += len(out)
        return out
