"""Prompts of an exact token count for HTTP servers, and the tokenizers that count them.

A benchmark of ``n_prompt`` tokens must send exactly ``n_prompt`` tokens. Servers that
take token-id prompts get them (:mod:`meltbench.engines.openai`); the others (mlx-lm's
server, Ollama, most cloud APIs, and every chat endpoint) take text, and the text must be
*counted* by the model's own tokenizer. A prompt is made of :data:`WORDS`, common English
words that the usual tokenizers read as one token each when separated by spaces; a
tokenizer is asked once whether that holds and how many tokens it adds (BOS, a chat
template), and the text then has ``n_prompt - overhead`` words.

Who counts, in the order the engine tries them:

1. the server's tokenizer route (``POST /extras/tokenize``, llama-cpp-python; ``POST
   /tokenize``, llama.cpp and vLLM): :class:`ServerTokenizer`;
2. the model's tokenizer on the client (:func:`open_client_tokenizer`): a GGUF file read
   vocabulary-only by llama.cpp (``llama_cpp.Llama(vocab_only=True)``, under a second
   for Gemma 3's 262,144 tokens), or a Hugging Face folder / ``tokenizer.json`` read by
   the ``tokenizers`` library (BOS added by its post-processor, as
   ``AutoTokenizer(text)`` adds it). ``-o tokenizer=PATH``; by default the served model
   name when it is a local path (mlx-lm's server names a model by its folder);
3. the server's own count (``usage.prompt_tokens`` of a one-token completion):
   :class:`UsageTokenizer`, for servers with neither.

Whatever counted the prompt, every request's ``usage.prompt_tokens`` (when the server
reports it) must equal ``n_prompt``, so the server's own view is the final check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "TOKENIZE_ROUTES",
    "WORDS",
    "ClientTokenizer",
    "PromptTokenizer",
    "ServerTokenizer",
    "UsageTokenizer",
    "calibrate_words",
    "check_text_prompt",
    "choose_counter",
    "open_client_tokenizer",
    "words_text",
]

#: Common English words that the usual tokenizers (Gemma, Llama, GPT, Qwen) read as one
#: token each; text prompts are made of them (checked against the tokenizer at load).
WORDS: tuple[str, ...] = (
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
    "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
    "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we",
    "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who",
    "so", "no", "time", "year", "people", "way", "day", "man", "new", "first", "world",
    "life", "work", "school", "house", "water", "city", "music",
)  # fmt: skip


#: Tokenizer routes under the server's root: llama-cpp-python's, then llama.cpp's/vLLM's.
TOKENIZE_ROUTES = ("/extras/tokenize", "/tokenize")


def words_text(ids: Sequence[int]) -> str:
    """The prompt text for synthetic ids: word ``id % len(WORDS)`` each, space-joined."""
    return " ".join(WORDS[i % len(WORDS)] for i in ids)


class PromptTokenizer(Protocol):
    """Counts the tokens a server makes of a prompt (specials such as BOS included)."""

    kind: str

    def count(self, text: str) -> int:
        """Tokens of ``text`` as the server sees it."""
        ...


class ServerTokenizer:
    """The server's tokenizer route (``kind`` ``"server"``); ``post(text)`` returns its
    JSON answer, whose ``tokens`` list is counted."""

    kind = "server"

    def __init__(self, post: Callable[[str], Any], url: str) -> None:
        self._post = post
        self.url = url

    def count(self, text: str) -> int:
        """Raises ValueError when the answer has no ``tokens`` list."""
        answer = self._post(text)
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise ValueError(f"unexpected answer from {self.url} (no 'tokens' list)")
        return len(tokens)


class UsageTokenizer:
    """Counts by asking the server: ``prompt_tokens(text)`` sends a one-token completion
    and returns its ``usage.prompt_tokens`` (``kind`` ``"usage"``)."""

    kind = "usage"

    def __init__(self, prompt_tokens: Callable[[str], int | None]) -> None:
        self._prompt_tokens = prompt_tokens

    def count(self, text: str) -> int:
        """Raises ValueError when the server reports no ``usage.prompt_tokens``."""
        n = self._prompt_tokens(text)
        if not isinstance(n, int) or isinstance(n, bool):
            raise ValueError("the server reports no usage.prompt_tokens")
        return n


class ClientTokenizer:
    """The model's tokenizer, run on the client (``kind`` ``"client"``).

    Attributes:
        path: the GGUF file, ``tokenizer.json`` or folder it was read from.
        library: ``llama.cpp`` (GGUF, vocabulary only) or ``tokenizers``.
        eos_ids: end-of-generation token ids (EOS, end-of-turn), for ``logit_bias``.
        n_vocab: vocabulary size.
    """

    kind = "client"

    def __init__(
        self,
        path: Path,
        library: str,
        encode: Callable[[str], list[int]],
        eos_ids: Sequence[int],
        n_vocab: int,
    ) -> None:
        self.path = path
        self.library = library
        self._encode = encode
        self.eos_ids = sorted(set(int(i) for i in eos_ids))
        self.n_vocab = int(n_vocab)

    def count(self, text: str) -> int:
        """Tokens of ``text`` with the model's specials (BOS) added, as servers add them."""
        return len(self._encode(text))

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the run record."""
        return {
            "path": str(self.path),
            "library": self.library,
            "eos_ids": list(self.eos_ids),
            "n_vocab": self.n_vocab,
        }


def _gguf_tokenizer(path: Path) -> ClientTokenizer:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    eos = [int(llama_cpp.llama_vocab_eos(vocab)), int(llama_cpp.llama_vocab_eot(vocab))]

    def encode(text: str) -> list[int]:
        return list(llm.tokenize(text.encode(), add_bos=True, special=False))

    return ClientTokenizer(
        path, "llama.cpp", encode, [i for i in eos if i >= 0], int(llm.n_vocab())
    )


def _eos_from_configs(folder: Path, special_id: Callable[[str], int | None]) -> list[int]:
    """End-of-generation ids: the configs' ``eos_token_id`` (an id or a list) and the
    usual end-of-turn tokens when the tokenizer has them as *special* tokens (Gemma's
    vocabulary also holds ``</s>`` as plain text, which must not be banned)."""
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):
        f = folder / name
        if not f.is_file():
            continue
        try:
            value = json.loads(f.read_text()).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        ids.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    for token in ("<eos>", "</s>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "<|im_end|>"):
        tid = special_id(token)
        if tid is not None:
            ids.append(tid)
    return ids


def _hf_tokenizer(path: Path) -> ClientTokenizer:
    from tokenizers import Tokenizer

    file = path / "tokenizer.json" if path.is_dir() else path
    tok = Tokenizer.from_file(str(file))

    def encode(text: str) -> list[int]:
        return list(tok.encode(text, add_special_tokens=True).ids)

    specials = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}

    def special_id(token: str) -> int | None:
        tid = tok.token_to_id(token)
        return tid if tid in specials else None

    eos = _eos_from_configs(file.parent, special_id)
    return ClientTokenizer(path, "tokenizers", encode, eos, tok.get_vocab_size())


def open_client_tokenizer(spec: str) -> ClientTokenizer:
    """The tokenizer at ``spec``: a ``.gguf`` file, a ``tokenizer.json``, or a folder
    holding one (a Hugging Face model folder).

    Raises:
        ValueError: (one line) nothing usable at ``spec``, or the library it needs
            (``llama-cpp-python`` for GGUF, ``tokenizers`` for Hugging Face files) is
            not installed.
    """
    path = Path(spec).expanduser()
    try:
        if path.is_file() and path.suffix == ".gguf":
            return _gguf_tokenizer(path)
        if (path.is_dir() and (path / "tokenizer.json").is_file()) or (
            path.is_file() and path.name.endswith(".json")
        ):
            return _hf_tokenizer(path)
    except ImportError as exc:
        raise ValueError(
            f"reading the tokenizer at {spec} needs {exc.name}: pip install "
            f"{'llama-cpp-python' if path.suffix == '.gguf' else 'tokenizers'}"
        ) from None
    raise ValueError(
        f"no tokenizer at {spec}: give -o tokenizer= a .gguf file, a tokenizer.json, or a "
        "Hugging Face folder that holds one"
    )


def calibrate_words(count: Callable[[str], int], wrap: Callable[[str], str] | None = None) -> int:
    """Check that every word of :data:`WORDS` is one token; return the fixed overhead.

    ``count(text)`` counts a prompt; ``wrap`` turns the words into what is counted (None:
    the words themselves). The overhead is ``count(all words) - len(WORDS)`` (BOS, a chat
    template); the check is that half the words cost exactly half as many tokens.

    Raises:
        ValueError: the words are not one token each (the message says how many).
    """
    wrap = wrap or (lambda text: text)
    full = count(wrap(" ".join(WORDS)))
    half = len(WORDS) // 2
    part = count(wrap(" ".join(WORDS[:half])))
    if full - part != len(WORDS) - half or full < len(WORDS):
        raise ValueError(
            f"the tokenizer does not read meltbench's prompt words as one token each "
            f"({full} tokens for {len(WORDS)} words)"
        )
    return full - len(WORDS)


def check_text_prompt(
    counter: PromptTokenizer, text: str, prompt_tokens: Any, n_prompt: int
) -> str | None:
    """Why a text prompt sent as ``n_prompt`` tokens was not that (None when it was).

    It must be ``n_prompt`` tokens by ``counter`` (unless the counter is the server's
    usage itself) and by the server's ``usage.prompt_tokens`` of the request
    (``prompt_tokens``, None when not reported; then required for a usage counter).
    ``counter.count`` may raise (ValueError, or the engine's errors).
    """
    if counter.kind != "usage":
        counted = counter.count(text)
        if counted != n_prompt:
            return (
                f"the text prompt became {counted} tokens ({counter.kind} tokenizer), not "
                f"{n_prompt}; use -o prompt=tokens with a server that accepts token ids"
            )
    if isinstance(prompt_tokens, int) and prompt_tokens != n_prompt:
        return (
            f"the server counted {prompt_tokens} prompt tokens, not {n_prompt} "
            f"(usage.prompt_tokens; the prompt was counted by the {counter.kind} tokenizer): "
            "pass the served model's tokenizer with -o tokenizer=PATH"
        )
    if not isinstance(prompt_tokens, int) and counter.kind == "usage":
        return (
            "no usage.prompt_tokens in the stream, so the prompt length cannot be checked; "
            "keep -o include_usage=true or pass -o tokenizer=PATH"
        )
    return None


def choose_counter(
    candidates: Sequence[PromptTokenizer],
    missing: Callable[[PromptTokenizer, BaseException], bool],
) -> PromptTokenizer | None:
    """The first candidate that can count a prompt (one test word), or None.

    A candidate whose count raises an error for which ``missing(candidate, exc)`` is
    true (a route the server does not have, a server that reports no usage) is passed
    over; any other error propagates.
    """
    for candidate in candidates:
        try:
            candidate.count(WORDS[0])
            return candidate
        except Exception as exc:
            if not missing(candidate, exc):
                raise
    return None
