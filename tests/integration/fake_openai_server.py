"""A tiny OpenAI-compatible server that can misbehave on purpose (standard library only).

Started in a thread on 127.0.0.1 (port 0: the kernel picks a free one) by the openai
engine's tests. It serves ``GET /v1/models``, ``POST /v1/completions`` and ``POST
/v1/chat/completions`` (streamed or not; a chat prompt costs :data:`CHAT_OVERHEAD` tokens
more than its words, like a chat template) and ``POST /tokenize`` (a whitespace tokenizer
that adds one BOS token), records every request, and answers streamed completions
according to ``mode``:

- ``ok``: ``max_tokens`` tokens (text ``" w{i}"``), ``tokens_per_chunk`` per chunk, then a
  chunk with ``finish_reason: "length"``, a usage chunk (if asked for and ``send_usage``)
  with llama.cpp-style ``timings``, and ``[DONE]``.
- ``http_500``: HTTP 500 with an OpenAI-style error body.
- ``bad_json``: two good chunks, then ``data: {not json``.
- ``close_mid_stream``: two good chunks, then the socket is closed inside the chunked body.
- ``stop_early``: three tokens, then ``finish_reason: "stop"`` (ignores ``ignore_eos``).
- ``hang``: sleeps ``hang_s`` seconds before answering.

Faults apply to streamed completions only; the engine's non-streamed load probe and the
models list always succeed (except for a wrong API key, which is a 401 everywhere).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer"]

MODES = ("ok", "http_500", "bad_json", "close_mid_stream", "stop_early", "hang")
#: tokens a chat prompt costs beyond its words (BOS and a template's markers).
CHAT_OVERHEAD = 5


class FakeOpenAIServer:
    """A misbehaving OpenAI-compatible server for tests.

    Args:
        mode: one of :data:`MODES`.
        model: the id listed by ``/v1/models``.
        n_vocab: reported as ``meta.n_vocab`` (llama.cpp's server style); None: no meta.
        api_key: if set, every request needs ``Authorization: Bearer <api_key>``.
        tokens_per_chunk: tokens packed in each streamed chunk.
        send_ids: put each chunk's token ids in ``choices[0].token_ids``.
        send_usage: answer ``stream_options.include_usage`` with a usage chunk.
        accept_token_prompts: if False, a token-array prompt gets HTTP 500 (as
            llama-cpp-python's server does).
        tokenize: serve ``POST /tokenize``.
        hang_s: delay of the ``hang`` mode, seconds.

    Attributes:
        requests: ``(method, path, headers, body)`` of every request, in order (header
            names in lower case).
        url: the ``/v1`` base URL, once started.
    """

    def __init__(
        self,
        mode: str = "ok",
        *,
        model: str = "fake-model",
        n_vocab: int | None = 1000,
        api_key: str | None = None,
        tokens_per_chunk: int = 1,
        send_ids: bool = False,
        send_usage: bool = True,
        accept_token_prompts: bool = True,
        tokenize: bool = True,
        hang_s: float = 3.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.model = model
        self.n_vocab = n_vocab
        self.api_key = api_key
        self.tokens_per_chunk = tokens_per_chunk
        self.send_ids = send_ids
        self.send_usage = send_usage
        self.accept_token_prompts = accept_token_prompts
        self.tokenize = tokenize
        self.hang_s = hang_s
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port (set by :meth:`start`, kept after :meth:`stop`)."""
        assert self._port is not None, "start the server first"
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Listen on 127.0.0.1 with a free port and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._port = int(self._httpd.server_address[1])
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def completions(self, stream: bool | None = None) -> list[dict[str, Any]]:
        """Bodies of the ``/v1/completions`` requests (only streamed ones if ``stream``)."""
        with self._lock:
            bodies = [b for m, p, h, b in self.requests if p == "/v1/completions"]
        return [b for b in bodies if stream is None or bool(b.get("stream")) == stream]

    def record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        """Append one request to :attr:`requests` (thread-safe)."""
        with self._lock:
            self.requests.append((method, path, headers, body))


def _words(text: str) -> list[str]:
    return text.split()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    # ------------------------------------------------------------------ helpers

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str) -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {text}\n\n".encode())

    def _authorized(self) -> bool:
        key = self.fake.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._error(401, "Invalid API key", "invalid_request_error")
        return False

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode(errors="replace")

    # ------------------------------------------------------------------ routes

    def do_GET(self) -> None:
        self.fake.record("GET", self.path, self._headers(), None)
        if not self._authorized():
            return
        if self.path == "/v1/models":
            entry: dict[str, Any] = {"id": self.fake.model, "object": "model", "owned_by": "fake"}
            if self.fake.n_vocab is not None:
                entry["meta"] = {"n_vocab": self.fake.n_vocab, "n_ctx_train": 512}
            self._json(200, {"object": "list", "data": [entry]})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        body = self._body()
        self.fake.record("POST", self.path, self._headers(), body)
        if not self._authorized():
            return
        if self.path == "/tokenize" and self.fake.tokenize and isinstance(body, dict):
            text = str(body.get("content", ""))
            self._json(200, {"tokens": [1] + [100 + i for i, _ in enumerate(_words(text))]})
        elif self.path in ("/v1/completions", "/v1/chat/completions") and isinstance(body, dict):
            try:
                self._completion(body)
            except OSError:  # the client went away (after a fault it noticed): fine
                self.close_connection = True
        else:
            self._error(404, f"no route {self.path}", "not_found")

    @staticmethod
    def _choice(chat: bool, text: str, reason: str | None, final: bool = False) -> dict[str, Any]:
        """A completion choice (``text``) or a chat one (``delta``, or ``message`` when not
        streamed)."""
        if not chat:
            return {"index": 0, "text": text, "finish_reason": reason}
        key = "message" if final else "delta"
        return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": reason}

    def _completion(self, body: dict[str, Any]) -> None:
        fake = self.fake
        chat = self.path.endswith("/chat/completions")
        prompt = body.get("prompt")
        if chat:
            n_prompt = CHAT_OVERHEAD + len(_words(str(body["messages"][-1]["content"])))
        elif isinstance(prompt, list):
            if not fake.accept_token_prompts:
                self._error(500, "Input should be a valid string", "internal_server_error")
                return
            n_prompt = len(prompt)
        else:
            n_prompt = 1 + len(_words(str(prompt)))
        n_gen = int(body.get("max_tokens") or 16)
        if not body.get("stream"):
            answer: dict[str, Any] = {
                "id": "cmpl-fake",
                "object": "chat.completion" if chat else "text_completion",
                "created": 0,
                "model": fake.model,
                "choices": [self._choice(chat, " w" * n_gen, "length", final=True)],
            }
            if fake.send_usage:
                answer["usage"] = {"prompt_tokens": n_prompt, "completion_tokens": n_gen}
            self._json(200, answer)
            return
        mode = fake.mode
        if mode == "hang":
            time.sleep(fake.hang_s)
        if mode == "http_500":
            self._error(500, "the fake server failed on purpose", "server_error")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        limit = {"bad_json": 2, "close_mid_stream": 2, "stop_early": 3}.get(mode, n_gen)
        produced = 0
        while produced < min(limit, n_gen):
            k = min(fake.tokens_per_chunk, min(limit, n_gen) - produced)
            ids = list(range(500 + produced, 500 + produced + k))
            choice = self._choice(chat, "".join(f" w{i}" for i in ids), None)
            if fake.send_ids:
                choice["token_ids"] = ids
            self._event(
                {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": 0,
                    "model": fake.model,
                    "choices": [choice],
                }
            )
            produced += k
        if mode == "bad_json":
            self._event("{not json")
            self._chunk(b"")
            return
        if mode == "close_mid_stream":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
            self.close_connection = True
            return
        reason = "stop" if mode == "stop_early" else "length"
        final = self._choice(chat, "", reason)
        self._event(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 0,
                "model": fake.model,
                "choices": [final],
            }
        )
        options = body.get("stream_options") or {}
        if fake.send_usage and options.get("include_usage"):
            usage = {
                "prompt_tokens": n_prompt,
                "completion_tokens": produced,
                "total_tokens": n_prompt + produced,
            }
            timings = {
                "prompt_n": n_prompt,
                "prompt_ms": 12.5,
                "predicted_n": produced,
                "predicted_ms": 40.0,
            }
            self._event(
                {
                    "id": "cmpl-fake",
                    "object": "text_completion",
                    "created": 0,
                    "model": fake.model,
                    "choices": [],
                    "usage": usage,
                    "timings": timings,
                }
            )
        self._event("[DONE]")
        self._chunk(b"")  # end of the chunked body
