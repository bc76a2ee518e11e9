"""HTTP helpers of the OpenAI-compatible engine: redacting URLs, the server's root, error
texts, and the token ids of a streamed choice."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["EndpointError", "describe_error", "redact_url", "server_root", "status_message"]

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
