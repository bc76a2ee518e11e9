"""llama.cpp through llama-cpp-python (``pip install 'meltbench[llama]'``).

Tokens are processed with the library's public ``Llama.eval`` (prompt split into
``n_batch`` chunks) and the next token is the argmax of the last logits row, read in
place through ``llama_get_logits_ith`` (no copy of the 262k-entry row). No sampler chain
is involved, so the timed loop is decode + argmax, like a greedy ``llama-cli`` run.

The engine's own counters come from llama.cpp's perf context
(``llama_perf_context``: ``t_p_eval_ms``/``n_p_eval`` for prompt processing,
``t_eval_ms``/``n_eval`` for single-token decode), reset before each timed request.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from meltbench.engines.base import Engine, EngineSettings, ModelHandle

__all__ = ["LlamaCppEngine", "parse_system_info"]

_FEATURE = re.compile(r"([A-Za-z0-9_]+)\s*=\s*([0-9]+)")


def parse_system_info(text: str) -> dict[str, Any]:
    """Parse ``llama_print_system_info()`` output into ``{backend: {FEATURE: int}}``.

    Example: ``"CPU : AVX2 = 1 | FMA = 1 | "`` -> ``{"CPU": {"AVX2": 1, "FMA": 1}}``.
    Text outside ``NAME : K = V | ...`` groups is ignored.
    """
    result: dict[str, Any] = {}
    for chunk in re.split(r"\|\s*(?=[A-Za-z0-9_ ]+ : )", text):
        head, sep, rest = chunk.partition(" : ")
        if not sep:
            continue
        features = {k: int(v) for k, v in _FEATURE.findall(rest)}
        if features:
            result[head.strip()] = features
    return result


class LlamaCppEngine(Engine):
    """llama.cpp (GGUF models, every quantization type llama.cpp supports)."""

    name = "llama.cpp"
    description = "llama.cpp through llama-cpp-python: GGUF, every quantization type"
    requires = ("llama_cpp",)
    install_hint = "pip install 'meltbench[llama]'"
    model_formats = ("gguf",)
    allowed_options = frozenset(
        {
            "n_gpu_layers",
            "main_gpu",
            "split_mode",
            "flash_attn",
            "type_k",
            "type_v",
            "use_mmap",
            "use_mlock",
            "offload_kqv",
            "swa_full",
            "op_offload",
            "numa",
        }
    )

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._llm: Any = None
        self._lib: Any = None
        self._logits_view: Any = None

    def load(self, model: ModelHandle) -> None:
        """Load the GGUF file and create a context of ``settings.n_ctx`` tokens.

        Raises:
            RuntimeError (from llama-cpp-python): if llama.cpp cannot load the model.
        """
        import llama_cpp

        s = self.settings
        self._lib = llama_cpp
        self._llm = llama_cpp.Llama(
            model_path=model.path,
            n_ctx=s.n_ctx,
            n_batch=s.batch,
            n_ubatch=s.ubatch,
            n_threads=s.threads,
            n_threads_batch=s.threads,
            seed=s.seed,
            verbose=False,
            **s.options,
        )

    @property
    def n_vocab(self) -> int:
        """Vocabulary size of the loaded model."""
        return int(self._llm.n_vocab())

    def bos_token(self) -> int | None:
        """BOS id when the vocabulary asks for one to be added, else None."""
        lib, llm = self._lib, self._llm
        vocab = lib.llama_model_get_vocab(llm.model)
        if lib.llama_vocab_get_add_bos(vocab):
            return int(lib.llama_vocab_bos(vocab))
        return None

    def info(self) -> dict[str, Any]:
        """Engine facts: versions, llama.cpp's model description and system info."""
        import ctypes

        lib, llm = self._lib, self._llm
        desc = ctypes.create_string_buffer(256)
        lib.llama_model_desc(llm.model, desc, len(desc))
        system_info = lib.llama_print_system_info().decode(errors="replace").strip()
        n_gpu_layers = int(self.settings.options.get("n_gpu_layers", 0))
        return {
            "name": self.name,
            "library": "llama-cpp-python",
            "version": getattr(lib, "__version__", None),
            "device": "gpu" if n_gpu_layers else "cpu",
            "model_desc": desc.value.decode(errors="replace"),
            "model_n_params": int(lib.llama_model_n_params(llm.model)),
            "model_size_bytes": int(lib.llama_model_size(llm.model)),
            "n_ctx": int(lib.llama_n_ctx(llm.ctx)),
            "n_batch": int(lib.llama_n_batch(llm.ctx)),
            "n_ubatch": int(lib.llama_n_ubatch(llm.ctx)),
            "n_threads": self.settings.threads,
            "options": dict(self.settings.options),
            "system_info": system_info,
            "features": parse_system_info(system_info),
        }

    def _argmax(self) -> int:
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).argmax())

    def reset(self) -> None:
        """Clear the KV cache (all sequences, data included)."""
        lib = self._lib
        self._llm.reset()
        lib.llama_memory_clear(lib.llama_get_memory(self._llm.ctx), True)

    def extend(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` into the KV cache and wait for the backend to finish.

        ``llama_decode`` may return before the computation ends (GPU backends), and
        llama.cpp books perf counters at ``llama_synchronize``; without the explicit
        synchronization the fill would leak into the timed request and its counters.
        """
        self._llm.eval(list(tokens))
        self._lib.llama_synchronize(self._llm.ctx)

    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Prefill ``prompt``, then yield ``n_gen`` greedy tokens one by one."""
        llm = self._llm
        llm.eval(list(prompt))
        token = self._argmax()
        yield token
        for _ in range(n_gen - 1):
            llm.eval([token])
            token = self._argmax()
            yield token

    def reset_counters(self) -> None:
        """Reset llama.cpp's perf context."""
        self._lib.llama_perf_context_reset(self._llm.ctx)

    def counters(self) -> dict[str, float]:
        """llama.cpp's perf context: prompt and decode time (ms) and token counts."""
        data = self._lib.llama_perf_context(self._llm.ctx)
        return {
            "t_p_eval_ms": float(data.t_p_eval_ms),
            "n_p_eval": float(data.n_p_eval),
            "t_eval_ms": float(data.t_eval_ms),
            "n_eval": float(data.n_eval),
        }

    def unload(self) -> None:
        """Free the model and context."""
        if self._llm is not None:
            self._llm.close()
            self._llm = None
