"""The one interface every inference engine implements.

The worker owns the clock: it takes ``time.perf_counter_ns()`` at request start and
each time :meth:`Engine.stream` yields a token, so every engine is timed by the same
code. An engine only has to load the model, process tokens and yield each generated
token as soon as it exists (no buffering).

Engines import their heavy library (llama_cpp, torch, ...) inside their methods, never at
module level, so the host process can list and check engines cheaply.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from meltbench.models.handle import ModelHandle

__all__ = ["Engine", "EngineSettings", "ModelHandle"]

#: Model formats an engine can declare in ``Engine.model_formats``.
MODEL_FORMATS = ("gguf", "hf", "onnx-genai", "mnn", "pte", "litertlm", "config", "remote")


@dataclass(frozen=True)
class EngineSettings:
    """Resolved engine settings, as the worker receives them.

    Attributes:
        threads: CPU threads for both prefill and decode.
        n_ctx: context size, tokens.
        batch: logical batch size for prompt processing, tokens.
        ubatch: physical batch size, tokens.
        seed: RNG seed handed to the engine (also seeds random weights).
        dtype: weights/compute type, or None for the engine's default.
        device: device name, or None for the engine's default.
        endpoint: server base URL (HTTP engines).
        options: engine-specific extra settings.
        timing: ``generation`` (decode includes choosing the next token, as an app
            does) or ``engine`` (llama-bench's tg: synthetic next tokens, no sampling);
            one of the engine's ``timing_modes``.
    """

    threads: int
    n_ctx: int
    batch: int
    ubatch: int
    seed: int = 0
    dtype: str | None = None
    device: str | None = None
    endpoint: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    timing: str = "generation"

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-ready)."""
        return asdict(self)


class Engine(ABC):
    """Base class of engines. Subclasses set ``name`` and ``requires``.

    Lifecycle in the worker: ``load`` once, then per repetition ``reset``, optionally
    ``extend`` (KV depth fill), ``reset_counters``, ``stream``, ``counters``; then, if
    profiling was asked for, ``reset`` and ``profile`` once; finally ``unload``.
    """

    name: ClassVar[str]
    #: one line for ``meltbench engines``.
    description: ClassVar[str] = ""
    #: import names the engine needs; checked on the host before a worker starts.
    requires: ClassVar[tuple[str, ...]] = ()
    #: what to run when a requirement is missing.
    install_hint: ClassVar[str] = ""
    #: extra options accepted in ``EngineSettings.options``.
    allowed_options: ClassVar[frozenset[str]] = frozenset()
    #: model formats ``load`` accepts (see :class:`ModelHandle`), preferred first.
    model_formats: ClassVar[tuple[str, ...]] = ("gguf",)
    #: values accepted for ``EngineSettings.dtype`` (empty: the engine takes none).
    dtypes: ClassVar[frozenset[str]] = frozenset()
    #: whether :meth:`profile` is implemented.
    supports_profile: ClassVar[bool] = False
    #: whether :meth:`extend` works (``--n-depth`` > 0).
    supports_depth: ClassVar[bool] = True
    #: values accepted for ``EngineSettings.timing`` (see :class:`EngineSettings`).
    timing_modes: ClassVar[tuple[str, ...]] = ("generation",)
    #: whether the text methods (:meth:`tokenize`, :meth:`detokenize`,
    #: :meth:`chat_template`, :meth:`is_end_of_generation`) work: request workloads
    #: (conversations, documents, the app) need them.
    supports_text: ClassVar[bool] = False

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """Import names in ``requires`` that are not installed (no import is done)."""
        return [mod for mod in cls.requires if importlib.util.find_spec(mod) is None]

    @classmethod
    def unknown_options(cls, options: dict[str, Any]) -> list[str]:
        """Option keys this engine does not accept."""
        return sorted(set(options) - cls.allowed_options)

    @classmethod
    def check_settings(cls, settings: EngineSettings) -> str | None:
        """A one-line problem with ``settings`` for this engine, or None if they are fine.

        The default checks ``dtype`` against :attr:`dtypes` and ``timing`` against
        :attr:`timing_modes`; engines add their own rules.
        """
        if settings.dtype is not None and settings.dtype not in cls.dtypes:
            allowed = ", ".join(sorted(cls.dtypes)) or "none (it takes no --dtype)"
            return f"engine {cls.name!r} has no dtype {settings.dtype!r}; choose: {allowed}"
        if settings.timing not in cls.timing_modes:
            return (
                f"engine {cls.name!r} has no --timing {settings.timing}; it measures "
                f"{', '.join(cls.timing_modes)} (--timing engine is llama.cpp's)"
            )
        return None

    @abstractmethod
    def load(self, model: ModelHandle) -> None:
        """Load the model and create the inference context (timed as ``load_ms``)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Facts about the loaded engine: name, version, device, build/system flags."""

    @property
    @abstractmethod
    def n_vocab(self) -> int:
        """Vocabulary size; synthetic token ids are drawn from ``[0, n_vocab)``."""

    def bos_token(self) -> int | None:
        """Beginning-of-sequence token id if the model expects one first, else None."""
        return None

    @abstractmethod
    def reset(self) -> None:
        """Empty the KV cache so the next request starts from position 0."""

    @abstractmethod
    def extend(self, tokens: Sequence[int]) -> None:
        """Append tokens to the KV cache without generating (used for ``n_depth``)."""

    @abstractmethod
    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Process ``prompt`` after the cached tokens, then yield ``n_gen`` greedy tokens.

        Each token must be yielded as soon as it is known. End-of-sequence is ignored so
        that exactly ``n_gen`` tokens are produced (as llama-bench does).
        """

    def reset_counters(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Reset the engine's own performance counters, if it has any."""

    def counters(self) -> dict[str, float] | None:
        """The engine's own performance counters since the last reset, or None."""
        return None

    def profile(self, prompt: Sequence[int], n_gen: int) -> dict[str, Any]:
        """Run one request under the engine's profiler (after :meth:`reset`).

        Returns:
            ``{"categories_ms": {category: ms}, "ops": [{"name", "category", "ms",
            "count"}, ...], "source": "..."}`` with categories from
            :data:`meltbench.measure.profile.CATEGORIES`.

        Raises:
            NotImplementedError: if the engine has no profiler (``supports_profile``).
        """
        raise NotImplementedError(f"engine {self.name!r} has no profiler")

    def unload(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Release the model and context."""

    # Text methods, for request workloads (``supports_text``).

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, special-token markup (``<start_of_turn>``) parsed as
        special tokens and no BOS added (a rendered chat template carries its own).

        Raises:
            NotImplementedError: the engine has no text methods (``supports_text``).
        """
        raise NotImplementedError(f"engine {self.name!r} has no tokenizer interface")

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens left out.

        Raises:
            NotImplementedError: the engine has no text methods (``supports_text``).
        """
        raise NotImplementedError(f"engine {self.name!r} has no tokenizer interface")

    def chat_template(self) -> tuple[str | None, str, str]:
        """``(template, bos_text, eos_text)``: the model's Jinja chat template (None when
        the model has none) and the texts of its BOS and EOS tokens ("" when none).

        Raises:
            NotImplementedError: the engine has no text methods (``supports_text``).
        """
        raise NotImplementedError(f"engine {self.name!r} has no chat template interface")

    def apply_chat_template(
        self, messages: Sequence[dict[str, str]]
    ) -> tuple[str, str, str | None]:
        """The prompt text of ``messages`` (``[{"role", "content"}, ...]``) ending with the
        assistant's turn opened, as transformers' ``apply_chat_template(...,
        add_generation_prompt=True)`` renders it.

        Returns:
            ``(text, source, warning)``: ``source`` names the template used
            (``model`` for the model's own); ``warning`` is None, or says the model has
            no chat template and which fallback was used.

        Raises:
            NotImplementedError: the engine has no text methods (``supports_text``).
            ValueError: the template failed to render these messages (one line).
        """
        from meltbench.workloads.chat_template import chat_template_or_fallback, render_chat

        template, bos, eos = self.chat_template()
        chosen, warning = chat_template_or_fallback(template)
        text = render_chat(chosen, list(messages), bos_token=bos, eos_token=eos)
        return text, "model" if warning is None else "meltbench fallback", warning

    def is_end_of_generation(self, token: int) -> bool:
        """Whether ``token`` ends a reply (EOS, end-of-turn: llama.cpp's "EOG" set).

        Raises:
            NotImplementedError: the engine has no text methods (``supports_text``).
        """
        raise NotImplementedError(f"engine {self.name!r} has no tokenizer interface")

    def keep_prefix(self, n: int) -> bool:
        """Keep only the first ``n`` positions of the KV cache (prefix reuse).

        Returns True when the cache now holds exactly those ``n`` tokens, so the next
        :meth:`stream` continues from position ``n``; False when the engine cannot drop
        a suffix (the caller then calls :meth:`reset` and sends the whole prompt). The
        default supports only ``n == 0`` (a reset).
        """
        if n == 0:
            self.reset()
            return True
        return False
