"""The ``-o`` options of the OpenAI-compatible engine (:mod:`meltbench.engines.openai`)
and their checks (host side).

Options (``-o KEY=VALUE``):

======================  ==============  ===============================================
``api_key_env``         OPENAI_API_KEY  environment variable holding the API key (sent
                                        as a bearer token; ``sk-no-key`` when unset). The
                                        key is never stored nor shown.
``n_vocab``             from server     vocabulary size for synthetic token ids
``timeout_s``           120             seconds for connect, and between two reads
``prompt``              auto            ``auto``, ``tokens`` or ``text``
``api``                 completions     ``completions`` or ``chat``
``tokenizer``           (model path)    GGUF file or Hugging Face folder that counts text
``ignore_eos``          true            send ``ignore_eos``, ``min_tokens``, ``logit_bias``
``include_usage``       true            send ``stream_options.include_usage``
======================  ==============  ===============================================
"""

from __future__ import annotations

import re
from typing import Any

from meltbench.engines.openai_http import _as_bool

__all__ = [
    "APIS",
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_TIMEOUT_S",
    "OPTIONS",
    "PROMPT_MODES",
    "check_options",
]

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_TIMEOUT_S = 120.0
PROMPT_MODES = ("auto", "tokens", "text")
APIS = ("completions", "chat")
OPTIONS = frozenset(
    {"api_key_env", "n_vocab", "timeout_s", "prompt", "ignore_eos", "include_usage",
     "tokenizer", "api"}
)  # fmt: skip
"""Every option the engine takes (others are refused by the engine base class)."""


def check_options(opts: dict[str, Any]) -> str | None:
    """A one-line problem with the values of ``opts``, or None."""
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
    if opts.get("api", "completions") not in APIS:
        return f"option api must be one of {', '.join(APIS)}, got {opts['api']!r}"
    if opts.get("api") == "chat" and opts.get("prompt") == "tokens":
        return "option api=chat takes text prompts only; drop -o prompt=tokens"
    if opts.get("api") == "chat" and _as_bool(opts.get("include_usage", True)) is False:
        return (
            "option api=chat needs include_usage: the prompt length is checked against "
            "the server's usage.prompt_tokens"
        )
    tok = opts.get("tokenizer")
    if tok is not None and (not isinstance(tok, str) or not tok):
        return f"option tokenizer must be a path, got {tok!r}"
    return None
