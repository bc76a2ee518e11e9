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
  (llama.cpp's server), else the client-side tokenizer's. The count is checked against
  ``usage.prompt_tokens``: fewer tokens (a truncated prompt) fails the run, more (a
  server that adds BOS) are kept and visible in the counters.
- ``text``: words of :data:`~meltbench.engines.openai_prompts.WORDS`, one token each,
  counted by the server's tokenizer route, else the model's tokenizer on the client
  (``-o tokenizer=PATH``: a GGUF or a Hugging Face folder; by default the served model
  name when it is a local path, as with mlx-lm's server), else the server's
  ``usage.prompt_tokens`` (:mod:`meltbench.engines.openai_prompts`). Every request is
  checked after its last token (untimed): by the counter, and against the server's
  ``usage.prompt_tokens``, which must be ``n_prompt`` exactly.
- ``auto`` (default): ``tokens`` when the vocabulary size is known and the server accepts
  a token-array probe (a 400/404/422/500 answer means it does not), else ``text``.

``-o api=chat`` sends ``/v1/chat/completions`` instead (one user message; the only route
many cloud APIs serve): text prompts whose chat-template overhead is measured from the
server's ``usage.prompt_tokens`` at load, and checked on every streamed usage chunk.

Server-side prompt caches (llama.cpp's ``cache_prompt``, llama-cpp-python's prefix
reuse, vLLM's prefix caching) would skip the prefill of a repeated prompt. Each request
therefore starts with 4 fresh random tokens (words in text mode) drawn in :meth:`reset`
from an unseeded generator, so no two requests, even of two runs, share a prefix; the
token count is unchanged.

End of sequence: by default the body carries ``ignore_eos: true`` (llama.cpp, vLLM),
``min_tokens: n_gen`` (vLLM, llama-cpp-python) and, when the client-side tokenizer knows
the end-of-generation ids, ``logit_bias`` -100 for them (mlx-lm's server honours only
that); ``-o ignore_eos=false`` drops all three. A server that still stops before
``n_gen`` tokens fails the run. ``stream_options: {"include_usage": true}`` asks for the
token counts (``-o include_usage=false`` drops it).

Memory: the worker's peak RSS is the *client's*. When the server listens on this
machine (a loopback endpoint), its process is found by its listening port and
``server_rss_bytes`` and ``server_peak_rss_bytes`` (``VmHWM``, since the server started)
are read after every request (:func:`~meltbench.engines.openai_http.local_server_memory`).

What :meth:`stream` yields: a chunk may carry several tokens (llama-cpp-python holds back
incomplete UTF-8, servers batch under load). When a chunk carries the token ids
(``choices[0].token_ids``, vLLM's ``return_token_ids``; or ``choices[0].tokens``), each
id is yielded, back to back; otherwise one running index (0, 1, 2, ...) is yielded per
chunk with output, i.e. a chunk with text, token ids, or no ``finish_reason`` yet (the
closing ``finish_reason`` chunk with empty text and the usage-only chunk are not output).
The metrics then count chunks: :meth:`counters` gives ``chunks`` and the server's
``completion_tokens``, so a mismatch is visible in every repetition.

Counters per request: :func:`~meltbench.engines.openai_http.request_counters`, plus the
server's memory. They are deliberately not named like llama.cpp's perf counters, so no
fidelity ratio compares the client's view with the server's own clock.

``--n-depth`` is not supported: an HTTP server keeps no KV cache that the client
controls between requests, and a longer prompt would be timed. :meth:`extend` raises.

Options (``-o KEY=VALUE``): :mod:`meltbench.engines.openai_options`.

Errors become :class:`EndpointError` with a one-line message (the worker stores it as the
failed run's cause): connection refused, timeout, HTTP status with the server's message,
invalid JSON in the stream, a connection closed mid-stream, a server stopping early.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from meltbench.engines.base import Engine, EngineSettings, ModelHandle
from meltbench.engines.openai_http import (
    EndpointError,
    StreamTally,
    _as_bool,
    _one_line,
    describe_error,
    local_server_memory,
    redact_url,
    request_counters,
    server_root,
    status_message,
)
from meltbench.engines.openai_options import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_TIMEOUT_S,
    OPTIONS,
    check_options,
)
from meltbench.engines.openai_prompts import (
    TOKENIZE_ROUTES,
    WORDS,
    ClientTokenizer,
    PromptTokenizer,
    ServerTokenizer,
    UsageTokenizer,
    calibrate_words,
    check_text_prompt,
    choose_counter,
    open_client_tokenizer,
    words_text,
)

__all__ = ["WORDS", "OpenAIEngine"]

#: sent when the key variable is unset (local servers without authentication).
PLACEHOLDER_API_KEY = "sk-no-key"
#: leading tokens replaced by fresh random ones per request (defeats prefix caches).
NONCE_TOKENS = 4
#: HTTP statuses of a token-array probe that mean "this server wants text prompts".
#: (mlx-lm's server answers 404 with a tokenizer type error.)
_REJECTS_TOKENS = frozenset({400, 404, 422, 500})
#: OpenAI's lowest logit_bias: the token is never sampled.
_BAN = -100


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
    allowed_options = OPTIONS

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
        self._api = str(opts.get("api", "completions"))
        self._tokenizer_option = opts.get("tokenizer")
        self._client_tok: ClientTokenizer | None = None
        self._prompt_counter: PromptTokenizer | None = None
        self._server_memory: dict[str, Any] | None = None
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
        return check_options(settings.options)

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
        self._server_memory = local_server_memory(self._endpoint)
        self._open_client_tokenizer()
        option = self.settings.options.get("n_vocab")
        if option is not None:
            self._n_vocab, self._n_vocab_source = int(option), "option"
        elif self._n_vocab is None and self._client_tok is not None:
            self._n_vocab, self._n_vocab_source = self._client_tok.n_vocab, "tokenizer"
        mode = self._mode_option
        if mode == "tokens" and self._n_vocab is None:
            raise EndpointError(self._no_vocab_message())
        if self._api == "completions" and mode in ("tokens", "auto") and self._n_vocab:
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

    def _open_client_tokenizer(self) -> None:
        """``-o tokenizer=PATH``, else the served model name when it is a local path."""
        from pathlib import Path

        spec = self._tokenizer_option
        if spec is None and self._ref and Path(self._ref).expanduser().exists():
            spec = self._ref  # mlx-lm's server names a model by its folder
        if spec is None:
            return
        try:
            self._client_tok = open_client_tokenizer(str(spec))
        except ValueError as exc:
            if self._tokenizer_option is not None:
                raise EndpointError(str(exc)) from None

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

    def _extra_eos(self, n_gen: int) -> dict[str, Any]:
        """``ignore_eos``/``min_tokens``, and a ban on the tokenizer's end-of-generation
        ids (``logit_bias``: mlx-lm's server honours only that)."""
        if not self._ignore_eos:
            return {}
        body: dict[str, Any] = {"ignore_eos": True, "min_tokens": n_gen}
        if self._client_tok is not None and self._client_tok.eos_ids:
            body["logit_bias"] = {str(i): _BAN for i in self._client_tok.eos_ids}
        return body

    def _probe(self, prompt: list[int] | str) -> Any:
        """One non-streamed request of 1 token (checks model name, auth, prompt kind);
        returns the answer."""
        url = f"{self._url}/{'chat/completions' if self._api == 'chat' else 'completions'}"
        extra = self._extra_eos(1)
        bias = extra.pop("logit_bias", None)
        try:
            if self._api == "chat":
                assert isinstance(prompt, str)
                return self._client.chat.completions.create(
                    model=self._ref,
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=1,
                    temperature=0,
                    extra_body=extra or None,
                    **({"logit_bias": bias} if bias else {}),
                )
            return self._client.completions.create(
                model=self._ref,
                prompt=prompt,
                max_tokens=1,
                temperature=0,
                extra_body=extra or None,
                **({"logit_bias": bias} if bias else {}),
            )
        except Exception as exc:
            raise EndpointError(self._error(exc, url)) from exc

    def _usage_prompt_tokens(self, text: str) -> int | None:
        usage = getattr(self._probe(text), "usage", None)
        n = getattr(usage, "prompt_tokens", None)
        return n if isinstance(n, int) else None

    def _count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the server sees it (specials such as BOS included).

        Raises:
            EndpointError: the counting tokenizer fails.
        """
        assert self._prompt_counter is not None
        try:
            return self._prompt_counter.count(text)
        except EndpointError:
            raise
        except ValueError as exc:
            raise EndpointError(
                f"counting prompt tokens ({self._prompt_counter.kind}): {exc}"
            ) from None

    def _server_tokenizer(self, url: str) -> ServerTokenizer:
        def post(text: str) -> Any:
            # llama-cpp-python reads "input"; llama.cpp "content" (+ add_special for BOS);
            # vLLM "prompt" and "model". Each server ignores the other fields.
            body = {"input": text, "content": text, "prompt": text, "model": self._ref}
            try:
                return self._client.post(url, body={**body, "add_special": True}, cast_to=object)
            except Exception as exc:
                raise EndpointError(self._error(exc, redact_url(url))) from exc

        return ServerTokenizer(post, redact_url(url))

    def _find_tokenizer(self) -> None:
        """Who counts text prompts: the server's route, the client's tokenizer, usage
        (chat: only usage, as the chat template is the server's own)."""
        import openai

        root = server_root(self._endpoint)
        candidates: list[PromptTokenizer] = []
        if self._api == "completions":
            candidates += [self._server_tokenizer(root + p) for p in TOKENIZE_ROUTES]
            candidates += [self._client_tok] if self._client_tok is not None else []
        candidates.append(UsageTokenizer(self._usage_prompt_tokens))

        def missing(counter: PromptTokenizer, exc: BaseException) -> bool:  # try the next
            route = counter.kind == "server" and isinstance(exc.__cause__, openai.APIStatusError)
            return isinstance(exc, ValueError) or route

        self._prompt_counter = choose_counter(candidates, missing)
        if self._prompt_counter is None:
            why = (
                f"it rejected token-id prompts ({self._token_probe_error})"
                if self._token_probe_error
                else "it reports no vocabulary size for token-id prompts (pass -o n_vocab=N)"
            )
            raise EndpointError(
                f"cannot build prompts of an exact length for {self._url}: {why}, it has no "
                f"tokenizer route ({' or '.join(TOKENIZE_ROUTES)}) and reports no "
                "usage.prompt_tokens; pass the model's tokenizer with -o tokenizer=PATH "
                "(a .gguf file or a Hugging Face folder)"
            )

    def _calibrate_text(self) -> None:
        """Check that every word of :data:`WORDS` is one token; measure the overhead."""
        self._find_tokenizer()
        try:
            self._text_overhead = calibrate_words(self._count_tokens)
        except ValueError as exc:
            raise EndpointError(
                f"{exc} on {self._url} (counted by the {self._prompt_counter.kind} tokenizer); "
                "use -o prompt=tokens"
            ) from None

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
            "api": self._api,
            "prompt_counted_by": (
                self._prompt_counter.kind if self._mode == "text" and self._prompt_counter else None
            ),
            "client_tokenizer": self._client_tok.describe() if self._client_tok else None,
            "server_process": (
                {k: v for k, v in self._server_memory.items() if k != "read"}
                if self._server_memory
                else None
            ),
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
        return words_text(ids)

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
        chat = self._api == "chat"
        url = f"{self._url}/{'chat/completions' if chat else 'completions'}"
        kwargs: dict[str, Any] = {
            "model": self._ref,
            "max_tokens": n_gen,
            "temperature": 0,
            "stream": True,
        }
        if chat:
            kwargs["messages"] = [{"role": "user", "content": body_prompt}]
        else:
            kwargs["prompt"] = body_prompt
        if self._include_usage:
            kwargs["stream_options"] = {"include_usage": True}
        extra = self._extra_eos(n_gen)
        if "logit_bias" in extra:
            kwargs["logit_bias"] = extra.pop("logit_bias")
        if extra:
            kwargs["extra_body"] = extra
        create = self._client.chat.completions.create if chat else self._client.completions.create
        tally = StreamTally(chat=chat)
        response: Any = None
        try:
            response = create(**kwargs)
            for chunk in response:
                yield from tally.outputs(chunk)
        except EndpointError:
            raise
        except Exception as exc:
            got = tally.chunks if response is not None else None
            raise EndpointError(self._error(exc, url, got, n_gen)) from exc
        finally:
            if response is not None:
                response.close()
        self._finish(tally, n_prompt, n_gen, body_prompt)

    def _finish(
        self, tally: StreamTally, n_prompt: int, n_gen: int, body_prompt: list[int] | str
    ) -> None:
        """Record the counters and check the request (after its last token: untimed)."""
        chunks, yielded, usage, finish = tally.chunks, tally.yielded, tally.usage, tally.finish
        counters = request_counters(chunks, yielded, usage, tally.timings)
        prompt_tokens = getattr(usage, "prompt_tokens", None) if usage is not None else None
        completion = getattr(usage, "completion_tokens", None) if usage is not None else None
        self._counters = counters
        if self._server_memory is not None:
            counters.update(self._server_memory["read"]())
        if finish is None:
            raise EndpointError(
                f"stream from {self._url} ended without a finish_reason after "
                f"{chunks} of {n_gen} tokens (connection closed early?)"
            )
        generated = completion if isinstance(completion, int) else yielded
        if generated < n_gen:
            raise EndpointError(
                f"server stopped after {generated} of {n_gen} tokens (finish_reason "
                f"{finish!r}): it ignored ignore_eos/min_tokens; results would be too short"
            )
        if isinstance(body_prompt, str):
            assert self._prompt_counter is not None
            problem = check_text_prompt(self._prompt_counter, body_prompt, prompt_tokens, n_prompt)
            if problem:
                raise EndpointError(f"{self._url}: {problem}")
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
