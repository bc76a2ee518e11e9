"""Any OpenAI-compatible HTTP server (``pip install 'meltbench[openai]'``).

llama.cpp's ``llama-server``, llama-cpp-python's server, vLLM, Ollama, mlx-lm's server and
cloud APIs speak the same ``/v1/completions`` protocol. This engine sends each request as
a streamed *legacy completion* (``client.completions.create(..., stream=True)`` of the
``openai`` SDK, ``max_retries=0``) with ``temperature=0`` and ``max_tokens=n_gen``, and
yields as each chunk with generated output arrives, so the worker's clock measures TTFT,
ITL and decode speed **at the client, network and HTTP stack included**. ``prefill_tps``
is therefore ``n_prompt / TTFT`` with the round trip in it, a lower bound of the server's
own prefill speed.

Model reference: ``--model`` is the model name sent to the server (format ``remote``);
``--endpoint`` is the base URL, e.g. ``http://127.0.0.1:8080/v1``. ``--threads``,
``--ctx`` and ``--batch`` are the server's business and are not sent. Measured tip:
llama-cpp-python's server computes the logits of every prompt token by default
(``logits_all``); start it with ``--logits_all False`` or its TTFT for 64 prompt tokens
of Gemma 3 270M is about 2.5x longer.

Loading (timed as ``load_ms``) is: ``GET {endpoint}/models``, then a one-token probe
completion (not streamed), then, for text prompts, 3 or 4 tokenizer calls; the HTTP
connection it opens is kept alive, so the first timed request does not pay the TCP
connect. It is not the server's own model load, and not the SDK import (done when the
engine is created, before the clock starts).

Prompts, exactly ``n_prompt`` tokens (option ``prompt``):

- ``tokens``: the worker's synthetic ids, sent as a token array (``prompt=[ids]``;
  llama.cpp's server, vLLM and OpenAI's API accept them). Needs the vocabulary size:
  option ``n_vocab``, else ``meta.n_vocab`` of the served model in ``GET /models``
  (llama.cpp's server reports it); otherwise the load fails asking for ``-o n_vocab=N``.
  The count is checked against ``usage.prompt_tokens`` when the server reports it: fewer
  tokens (a truncated prompt) fails the run, more (a server that adds BOS) are kept and
  visible in the counters.
- ``text``: for servers without token-array prompts (llama-cpp-python's server answers
  HTTP 500 to them). Each synthetic id picks one word of :data:`WORDS` (``id % 64``);
  the words are joined by spaces. At load the server's tokenizer (``POST
  /extras/tokenize``, llama-cpp-python; or ``POST /tokenize``, llama.cpp and vLLM) must
  read every word as one token; it also gives the fixed overhead (BOS), so the text has
  ``n_prompt - overhead`` words. After every request's last token (outside the timed
  span) the exact text sent is tokenized again and a count other than ``n_prompt`` fails
  the run: never a silently different prompt length.
- ``auto`` (default): ``tokens`` when the vocabulary size is known and the server accepts
  a token-array probe (a 400/422/500 answer means it does not), else ``text``.

Server-side prompt caches (llama.cpp's ``cache_prompt``, llama-cpp-python's prefix
reuse, vLLM's prefix caching) would skip the prefill of a repeated prompt. Each request
therefore starts with 4 fresh random tokens (words in text mode) drawn in :meth:`reset`
from an unseeded generator, so no two requests, even of two runs, share a prefix; the
token count is unchanged.

End of sequence: by default the body also carries ``ignore_eos: true`` (llama.cpp, vLLM)
and ``min_tokens: n_gen`` (vLLM, llama-cpp-python); ``-o ignore_eos=false`` drops both
for APIs that reject unknown fields. A server that still stops before ``n_gen`` tokens
fails the run (llama-cpp-python's ``min_tokens`` bans only the EOS token, not other
end-of-generation tokens such as Gemma's ``<end_of_turn>``).
``stream_options: {"include_usage": true}`` asks for the token counts
(``-o include_usage=false`` drops it).

What :meth:`stream` yields: a chunk may carry several tokens (llama-cpp-python holds back
incomplete UTF-8, servers batch under load). When a chunk carries the token ids
(``choices[0].token_ids``, vLLM's ``return_token_ids``; or ``choices[0].tokens``), each
id is yielded, back to back; otherwise one running index (0, 1, 2, ...) is yielded per
chunk with output, i.e. a chunk with text, token ids, or no ``finish_reason`` yet (the
closing ``finish_reason`` chunk with empty text and the usage-only chunk are not output).
The metrics then count chunks: :meth:`counters` gives ``chunks`` and the server's
``completion_tokens``, so a mismatch is visible in every repetition.

Counters per request (counted at the client or reported by the server, never invented):
``chunks`` (output chunks received), ``yielded`` (tokens yielded), ``prompt_tokens`` and
``completion_tokens`` (``usage``, when reported), ``server_prompt_n``, ``server_prompt_ms``,
``server_predicted_n``, ``server_predicted_ms`` (llama.cpp's ``timings``, when present).
They are deliberately not named like llama.cpp's perf counters, so no fidelity ratio
compares the client's view with the server's own clock.

``--n-depth`` is not supported: an HTTP server keeps no KV cache that the client
controls between requests, and a longer prompt would be timed. :meth:`extend` raises.

Options (``-o KEY=VALUE``):

======================  ==============  ===============================================
``api_key_env``         OPENAI_API_KEY  environment variable holding the API key (sent
                                        as a bearer token; ``sk-no-key`` when unset). The
                                        key is never stored nor shown.
``n_vocab``             from server     vocabulary size for synthetic token ids
``timeout_s``           120             seconds for connect, and between two reads
``prompt``              auto            ``auto``, ``tokens`` or ``text`` (see above)
``ignore_eos``          true            send ``ignore_eos`` and ``min_tokens``
``include_usage``       true            send ``stream_options.include_usage``
======================  ==============  ===============================================

Errors become :class:`EndpointError` with a one-line message (the worker stores it as the
failed run's cause): connection refused, timeout, HTTP status with the server's message,
invalid JSON in the stream, a connection closed mid-stream, a server stopping early.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from meltbench.engines.base import Engine, EngineSettings, ModelHandle
from meltbench.engines.openai_http import (
    EndpointError,
    _as_bool,
    _choice_ids,
    _one_line,
    describe_error,
    redact_url,
    server_root,
    status_message,
)

__all__ = ["WORDS", "OpenAIEngine"]

#: Common English words that the usual tokenizers (Gemma, Llama, GPT, Qwen) read as one
#: token each; text prompts are made of them (checked against the server at load).
WORDS: tuple[str, ...] = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
    "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
    "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we",
    "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who",
    "so", "no", "time", "year", "people", "way", "day", "man", "new", "first", "world",
    "life", "work", "school", "house", "water", "city", "music",
)  # fmt: skip

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
#: sent when the key variable is unset (local servers without authentication).
PLACEHOLDER_API_KEY = "sk-no-key"
DEFAULT_TIMEOUT_S = 120.0
PROMPT_MODES = ("auto", "tokens", "text")
#: leading tokens replaced by fresh random ones per request (defeats prefix caches).
NONCE_TOKENS = 4
#: HTTP statuses of a token-array probe that mean "this server wants text prompts".
_REJECTS_TOKENS = frozenset({400, 422, 500})


class OpenAIEngine(Engine):
    """An OpenAI-compatible server over HTTP (see the module docstring for the details)."""

    name = "openai"
    description = "any OpenAI-compatible HTTP server (llama.cpp server, vLLM, Ollama, cloud APIs)"
    requires = ("openai",)
    install_hint = "pip install 'meltbench[openai]'"
    model_formats = ("remote",)
    dtypes = frozenset()
    supports_profile = False
    supports_depth = False
    allowed_options = frozenset(
        {"api_key_env", "n_vocab", "timeout_s", "prompt", "ignore_eos", "include_usage"}
    )

    def __init__(self, settings: EngineSettings) -> None:
        import openai  # noqa: F401 - here, not in load: load_ms times the server, not the import

        super().__init__(settings)
        opts = settings.options
        self._endpoint = (settings.endpoint or "").rstrip("/")
        self._url = redact_url(self._endpoint)
        self._key_env = str(opts.get("api_key_env", DEFAULT_API_KEY_ENV))
        self._timeout_s = float(opts.get("timeout_s", DEFAULT_TIMEOUT_S))
        self._mode_option = str(opts.get("prompt", "auto"))
        self._ignore_eos = _as_bool(opts.get("ignore_eos", True)) is not False
        self._include_usage = _as_bool(opts.get("include_usage", True)) is not False
        self._client: Any = None
        self._secret: str = ""
        self._ref = ""
        self._mode = ""
        self._n_vocab: int | None = None
        self._n_vocab_source: str | None = None
        self._models: list[str] = []
        self._meta: dict[str, Any] = {}
        self._token_probe_error: str | None = None
        self._tokenize_url: str | None = None
        self._text_overhead = 0
        self._rng = random.Random(os.urandom(16))
        self._nonce: list[int] = []
        self._counters: dict[str, float] | None = None

    # ----------------------------------------------------------------- host-side checks

    @classmethod
    def check_settings(cls, settings: EngineSettings) -> str | None:
        """A one-line problem with ``settings``, or None.

        Checks: ``--endpoint`` given and an ``http(s)://host`` URL; no ``--dtype``; no
        ``--device`` other than ``remote``; option values of the right type.
        """
        problem = super().check_settings(settings)
        if problem:
            return problem
        if not settings.endpoint:
            return "the openai engine needs --endpoint URL, e.g. http://127.0.0.1:8080/v1"
        parts = urlsplit(settings.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return (
                f"--endpoint must be an http(s) URL such as http://127.0.0.1:8080/v1, "
                f"got {redact_url(settings.endpoint)!r}"
            )
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return f"--endpoint has an invalid port: {redact_url(settings.endpoint)!r}"
        if settings.device not in (None, "remote"):
            return "the openai engine runs on the server; drop --device"
        return cls._check_options(settings.options)

    @staticmethod
    def _check_options(opts: dict[str, Any]) -> str | None:
        key_env = opts.get("api_key_env", DEFAULT_API_KEY_ENV)
        if not isinstance(key_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
            return "option api_key_env must name an environment variable, e.g. OPENAI_API_KEY"
        n_vocab = opts.get("n_vocab")
        if n_vocab is not None and (
            isinstance(n_vocab, bool) or not isinstance(n_vocab, int) or n_vocab < 1
        ):
            return f"option n_vocab must be a positive integer, got {n_vocab!r}"
        timeout = opts.get("timeout_s", DEFAULT_TIMEOUT_S)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            return f"option timeout_s must be a positive number of seconds, got {timeout!r}"
        if opts.get("prompt", "auto") not in PROMPT_MODES:
            return f"option prompt must be one of {', '.join(PROMPT_MODES)}, got {opts['prompt']!r}"
        for flag in ("ignore_eos", "include_usage"):
            if flag in opts and _as_bool(opts[flag]) is None:
                return f"option {flag} must be true or false, got {opts[flag]!r}"
        return None

    # ------------------------------------------------------------------------ errors

    def _scrub(self, text: str) -> str:
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return _one_line(text)

    def _status_message(self, exc: Any) -> str:
        return status_message(exc, self._scrub)

    def _error(self, exc: BaseException, url: str, got: int | None = None, n: int = 0) -> str:
        """One line describing ``exc`` raised while talking to ``url`` (see
        :func:`meltbench.engines.openai_http.describe_error`)."""
        return describe_error(
            exc, url, self._scrub, self._key_env, self._models, self._timeout_s, got, n
        )

    # ------------------------------------------------------------------------ loading

    def load(self, model: ModelHandle) -> None:
        """Connect: list the server's models, probe a completion, pick the prompt mode.

        Raises:
            EndpointError: server unreachable, HTTP error, no usable prompt mode (token
                arrays rejected and no tokenizer route), no vocabulary size for token
                prompts, or a tokenizer that splits :data:`WORDS`.
        """
        import openai

        self._ref = model.ref
        self._secret = os.environ.get(self._key_env) or ""
        self._client = openai.OpenAI(
            api_key=self._secret or PLACEHOLDER_API_KEY,
            base_url=self._endpoint,
            max_retries=0,
            timeout=self._timeout_s,
        )
        self._list_models()
        option = self.settings.options.get("n_vocab")
        if option is not None:
            self._n_vocab, self._n_vocab_source = int(option), "option"
        mode = self._mode_option
        if mode == "tokens" and self._n_vocab is None:
            raise EndpointError(self._no_vocab_message())
        if mode in ("tokens", "auto") and self._n_vocab is not None:
            try:
                self._probe([0])
                self._mode = "tokens"
                return
            except EndpointError as exc:
                status = getattr(exc.__cause__, "status_code", None)
                if mode == "tokens" or status not in _REJECTS_TOKENS:
                    raise
                self._token_probe_error = str(exc)
        self._calibrate_text()
        self._probe(self._text([0] * 8))
        self._mode = "text"

    def _no_vocab_message(self) -> str:
        return (
            f"the openai engine needs the vocabulary size to draw token ids, and {self._url} "
            "does not report it (GET /models meta.n_vocab); pass -o n_vocab=N"
        )

    def _list_models(self) -> None:
        url = f"{self._endpoint}/models"
        try:
            answer = self._client.get(url, cast_to=object)
        except Exception as exc:
            raise EndpointError(self._error(exc, f"{self._url}/models")) from exc
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise EndpointError(
                f"unexpected answer from {self._url}/models (no 'data' list): "
                f"{self._scrub(json.dumps(answer))}"
            )
        entries = [d for d in data if isinstance(d, dict)]
        self._models = [str(d.get("id")) for d in entries]
        self._meta = {
            str(d.get("id")): d["meta"] for d in entries if isinstance(d.get("meta"), dict)
        }
        served = next((d for d in entries if d.get("id") == self._ref), None)
        if served is None and len(entries) == 1:
            served = entries[0]  # single-model servers answer whatever name is asked for
        meta = served.get("meta") if served else None
        n_vocab = meta.get("n_vocab") if isinstance(meta, dict) else None
        if isinstance(n_vocab, int) and not isinstance(n_vocab, bool) and n_vocab > 0:
            self._n_vocab, self._n_vocab_source = n_vocab, "server"

    def _extra_body(self, n_gen: int) -> dict[str, Any] | None:
        return {"ignore_eos": True, "min_tokens": n_gen} if self._ignore_eos else None

    def _probe(self, prompt: list[int] | str) -> None:
        """One non-streamed completion of 1 token (checks model name, auth, prompt kind)."""
        url = f"{self._url}/completions"
        try:
            self._client.completions.create(
                model=self._ref,
                prompt=prompt,
                max_tokens=1,
                temperature=0,
                extra_body=self._extra_body(1),
            )
        except Exception as exc:
            raise EndpointError(self._error(exc, url)) from exc

    def _count_tokens(self, text: str) -> int:
        """Tokens the server makes of ``text`` (specials such as BOS included).

        Raises:
            EndpointError: the tokenizer route fails.
        """
        assert self._tokenize_url is not None
        url = redact_url(self._tokenize_url)
        try:
            answer = self._client.post(
                self._tokenize_url, body=self._tokenize_body(text), cast_to=object
            )
        except Exception as exc:
            raise EndpointError(self._error(exc, url)) from exc
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise EndpointError(f"unexpected answer from {url} (no 'tokens' list)")
        return len(tokens)

    def _tokenize_body(self, text: str) -> dict[str, Any]:
        # llama-cpp-python reads "input"; llama.cpp "content" (+ add_special for BOS);
        # vLLM "prompt" and "model". Each server ignores the other fields.
        return {
            "input": text,
            "content": text,
            "prompt": text,
            "model": self._ref,
            "add_special": True,
        }

    def _find_tokenizer(self) -> None:
        import openai

        root = server_root(self._endpoint)
        for path in ("/extras/tokenize", "/tokenize"):
            self._tokenize_url = root + path
            try:
                self._count_tokens(WORDS[0])
                return
            except EndpointError as exc:
                cause = exc.__cause__
                if isinstance(cause, openai.APIStatusError) or cause is None:
                    continue  # route missing (404/405) or not a tokenizer answer
                raise
        self._tokenize_url = None
        why = (
            f"it rejected token-id prompts ({self._token_probe_error})"
            if self._token_probe_error
            else "it reports no vocabulary size for token-id prompts (pass -o n_vocab=N)"
        )
        raise EndpointError(
            f"cannot build prompts for {self._url}: {why}, and it has no tokenizer route "
            "(/extras/tokenize or /tokenize) for text prompts of an exact length"
        )

    def _calibrate_text(self) -> None:
        """Check that every word of :data:`WORDS` is one token; measure the overhead."""
        self._find_tokenizer()
        full = self._count_tokens(" ".join(WORDS))
        half = len(WORDS) // 2
        part = self._count_tokens(" ".join(WORDS[:half]))
        if full - part != len(WORDS) - half or full < len(WORDS):
            raise EndpointError(
                f"the tokenizer of {self._url} does not read meltbench's prompt words as one "
                f"token each ({full} tokens for {len(WORDS)} words); use -o prompt=tokens"
            )
        self._text_overhead = full - len(WORDS)

    # ----------------------------------------------------------------------- contract

    def info(self) -> dict[str, Any]:
        """Engine facts: SDK version, endpoint (no credentials), models, prompt mode."""
        import openai

        return {
            "name": self.name,
            "library": "openai",
            "version": getattr(openai, "__version__", None),
            "device": "remote",
            "n_threads": None,  # the server's threads are its own business
            "endpoint": self._url,
            "model": self._ref,
            "server_models": list(self._models),
            "server_meta": dict(self._meta),
            "model_listed": self._ref in self._models,
            "prompt_mode": self._mode,
            "token_prompt_error": self._token_probe_error,
            "text_overhead_tokens": self._text_overhead if self._mode == "text" else None,
            "n_vocab": self._n_vocab,
            "n_vocab_source": self._n_vocab_source,
            "api_key_env": self._key_env,
            "api_key_set": bool(self._secret),
            "timeout_s": self._timeout_s,
            "ignore_eos": self._ignore_eos,
            "include_usage": self._include_usage,
            "nonce_tokens": NONCE_TOKENS,
        }

    @property
    def n_vocab(self) -> int:
        """Vocabulary size for synthetic ids: option, server meta, or ``len(WORDS)`` (text).

        Raises:
            EndpointError: token prompts and no known size (load prevents this).
        """
        if self._n_vocab is not None:
            return self._n_vocab
        if self._mode == "text":
            return len(WORDS)
        raise EndpointError(self._no_vocab_message())

    def reset(self) -> None:
        """Draw the next request's leading random tokens (the server keeps no state of ours)."""
        size = self._n_vocab if self._mode == "tokens" and self._n_vocab else len(WORDS)
        self._nonce = [self._rng.randrange(size) for _ in range(NONCE_TOKENS)]

    def extend(self, tokens: Sequence[int]) -> None:
        """Not supported: an HTTP server keeps no KV cache we control between requests.

        Raises:
            EndpointError: always (for ``--n-depth`` > 0).
        """
        raise EndpointError(
            "the openai engine does not support --n-depth: an HTTP server keeps no KV cache "
            "that the client controls between requests; use --n-depth 0"
        )

    def _text(self, ids: Sequence[int]) -> str:
        return " ".join(WORDS[i % len(WORDS)] for i in ids)

    def _request_prompt(self, prompt: Sequence[int]) -> list[int] | str:
        ids = list(prompt)
        if not self._nonce:
            self.reset()
        if self._mode == "text":
            n_words = len(ids) - self._text_overhead
            if n_words < 1:
                raise EndpointError(
                    f"--n-prompt {len(ids)} is too short for text prompts on this server "
                    f"({self._text_overhead} tokens are added to every prompt)"
                )
            ids = ids[:n_words]
        k = min(NONCE_TOKENS, len(ids))
        ids[:k] = self._nonce[:k]
        return self._text(ids) if self._mode == "text" else ids

    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Send one streamed completion and yield as output chunks arrive.

        Yields each token id a chunk carries, else one running index per output chunk
        (module docstring). After the last one: checks the stream ended with a
        ``finish_reason``, that ``n_gen`` tokens were generated, and the prompt length.

        Raises:
            EndpointError: connection refused or lost, timeout, HTTP status, invalid JSON
                chunk, an error event, a server that stopped early or miscounted the prompt.
        """
        self._counters = None
        body_prompt = self._request_prompt(prompt)
        n_prompt = len(prompt)
        url = f"{self._url}/completions"
        kwargs: dict[str, Any] = {
            "model": self._ref,
            "prompt": body_prompt,
            "max_tokens": n_gen,
            "temperature": 0,
            "stream": True,
        }
        if self._include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        extra = self._extra_body(n_gen)
        if extra:
            kwargs["extra_body"] = extra
        chunks = yielded = 0
        usage: Any = None
        timings: Any = None
        finish: str | None = None
        started = False
        response: Any = None
        try:
            response = self._client.completions.create(**kwargs)
            started = True
            for chunk in response:
                extras = getattr(chunk, "model_extra", None) or {}
                timings = extras.get("timings", timings)
                usage = getattr(chunk, "usage", None) or usage
                for choice in getattr(chunk, "choices", None) or ():
                    text = getattr(choice, "text", None) or ""
                    reason = getattr(choice, "finish_reason", None)
                    ids = _choice_ids(choice)
                    if reason is not None:
                        finish = reason
                    if not (text or ids or reason is None):
                        continue
                    chunks += 1
                    if ids:
                        for token in ids:
                            yielded += 1
                            yield token
                    else:
                        yielded += 1
                        yield chunks - 1
        except EndpointError:
            raise
        except Exception as exc:
            got = chunks if started else None
            raise EndpointError(self._error(exc, url, got, n_gen)) from exc
        finally:
            if response is not None:
                response.close()
        self._finish(chunks, yielded, usage, timings, finish, n_prompt, n_gen, body_prompt)

    def _finish(
        self,
        chunks: int,
        yielded: int,
        usage: Any,
        timings: Any,
        finish: str | None,
        n_prompt: int,
        n_gen: int,
        body_prompt: list[int] | str,
    ) -> None:
        """Record the counters and check the request (after its last token: untimed)."""
        counters: dict[str, float] = {"chunks": float(chunks), "yielded": float(yielded)}
        prompt_tokens = getattr(usage, "prompt_tokens", None) if usage is not None else None
        completion = getattr(usage, "completion_tokens", None) if usage is not None else None
        if isinstance(prompt_tokens, int):
            counters["prompt_tokens"] = float(prompt_tokens)
        if isinstance(completion, int):
            counters["completion_tokens"] = float(completion)
        if isinstance(timings, dict):
            for key in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms"):
                value = timings.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    counters[f"server_{key}"] = float(value)
        self._counters = counters
        if finish is None:
            raise EndpointError(
                f"stream from {self._url}/completions ended without a finish_reason after "
                f"{chunks} of {n_gen} tokens (connection closed early?)"
            )
        generated = completion if isinstance(completion, int) else yielded
        if generated < n_gen:
            raise EndpointError(
                f"server stopped after {generated} of {n_gen} tokens (finish_reason "
                f"{finish!r}): it ignored ignore_eos/min_tokens; results would be too short"
            )
        if isinstance(body_prompt, str):
            counted = self._count_tokens(body_prompt)
            if counted != n_prompt:
                raise EndpointError(
                    f"the text prompt became {counted} tokens on the server, not {n_prompt}; "
                    "use -o prompt=tokens with a server that accepts token ids"
                )
        elif isinstance(prompt_tokens, int) and prompt_tokens < n_prompt:
            raise EndpointError(
                f"server processed {prompt_tokens} of {n_prompt} prompt tokens (truncated? "
                "check the server's context size)"
            )

    def reset_counters(self) -> None:
        """Forget the previous request's counters."""
        self._counters = None

    def counters(self) -> dict[str, float] | None:
        """The last request's counters (module docstring), or None before any request."""
        return dict(self._counters) if self._counters is not None else None

    def unload(self) -> None:
        """Close the HTTP client (and its kept-alive connection)."""
        if self._client is not None:
            self._client.close()
            self._client = None
