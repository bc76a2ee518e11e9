"""llama.cpp as a logits source (llama-cpp-python, ``pip install 'meltbench[llama]'``).

The model is loaded as the llama.cpp engine loads it (``llama_cpp.Llama`` with
``n_ctx``, ``n_batch = n_ubatch = batch``, ``n_threads = n_threads_batch = threads``),
but windows are evaluated with llama.cpp's C API, not ``Llama.eval``: with
``logits_all=True`` that method copies every position's logits into a
``(n_ctx, n_vocab)`` float32 array (512 MiB for Gemma 3's 262,144-token vocabulary at
``n_ctx`` 512), and computes the LM head for every position, scored or not.

Method, per window (``include/llama.h`` of llama.cpp):

1. ``llama_memory_clear(llama_get_memory(ctx), true)``: an empty KV cache;
2. for each run of ``batch`` tokens, one ``llama_batch`` (``llama_batch_init(batch, 0,
   1)``, sequence 0, positions ``0..n-1``) whose ``logits`` flag is set only for the
   positions scored (``first .. n - 2``), then ``llama_decode``;
3. ``llama_get_logits(ctx)``: the requested rows, contiguous in batch order; they are
   viewed in place (no copy) as a ``(rows, n_vocab)`` float32 array and reduced at
   once with :func:`meltbench.accuracy.scoring.reduce_rows`.

So memory for logits is llama.cpp's own output buffer (``batch x n_vocab`` float32, 128
MiB for Gemma 3 at batch 128) plus ``reduce_rows``' chunk, whatever the window, and the
LM head (the largest matrix product of a small model with a large vocabulary) runs only
for scored positions. Measured on 2 cores for Gemma 3 270M Q4_K_M: 2,985 tokens of
WikiText-2 (windows of 256, stride 128) in 23 s (7.6 ms per scored token, about a third
of it the float64 reduction), peak RSS 0.68 GB; at ``n_ctx`` 512 (stride 256) two
windows took 4.7 s and 0.68 GB this way, against 7.1 s and 1.19 GB through
``Llama.eval`` with ``logits_all=True`` (same scores).

Determinism: on CPU, llama.cpp computes the same window with the same threads and batch
bit for bit, so a model scored twice gives equal log-probabilities (KL exactly 0,
top-1 agreement 1.0). A position's scores do depend a little on where it falls in its
``llama_decode``: the CPU backend's repacked quantized matrix products (``REPACK = 1``
in ``llama_print_system_info``) take the batch's rows in groups of 4 and the last
``n_tokens % 4`` rows through a single-row kernel, which rounds differently. Measured on
Gemma 3 270M Q4_K_M: the two paths differ by 0.011 nats per token on average (up to
0.16), and each is 0.039 nats from transformers' float32 computation, so neither is more
exact. Batches whose lengths are multiples of 4 (the default 128, and every run of a
window of ``ctx`` tokens when ``ctx`` and ``batch`` are multiples of 4) give results
independent of ``batch``; only the shorter last window of a corpus has a ragged run.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from meltbench.accuracy.base import (
    LogitsSource,
    RowScores,
    check_ref_full,
    check_ref_ids,
    check_settings,
    check_window,
)
from meltbench.accuracy.scoring import WindowRows

__all__ = ["LlamaCppLogits"]


def _quant_name(file_type: Any) -> str | None:
    """llama.cpp's name of a ``general.file_type`` value (``15`` -> ``Q4_K_M``)."""
    try:
        import gguf

        name = gguf.LlamaFileType(int(file_type)).name
    except (ImportError, TypeError, ValueError):
        return None
    for prefix in ("MOSTLY_", "ALL_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


class LlamaCppLogits(LogitsSource):
    """Next-token scores of a GGUF model computed by llama.cpp (see the module docstring).

    Args:
        path: the GGUF file.
        ctx: the longest window :meth:`score` accepts, tokens (llama.cpp ``n_ctx``).
        threads: CPU threads for every decode (``n_threads`` and ``n_threads_batch``);
            None = physical cores (:func:`meltbench.environment.physical_cores`).
        batch: tokens per ``llama_decode`` (``n_batch`` and ``n_ubatch``; at most
            ``ctx``); the logits of at most this many positions exist at once.
        info: facts about the model from :func:`meltbench.models.resolve.resolve_model`
            (``quant``, ``name``), reported by :meth:`describe`; optional.
        options: extra ``llama_cpp.Llama`` keyword arguments (``n_gpu_layers``, ...).

    Raises:
        ValueError: ``ctx < 2``, ``threads < 1`` or ``batch < 1``, ``options`` that
            ``Llama()`` does not take (:meth:`invalid_options`); from llama-cpp-python,
            a file llama.cpp cannot load.
        RuntimeError: llama.cpp could not create the batch.
    """

    engine = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        *,
        ctx: int = 512,
        threads: int | None = None,
        batch: int = 128,
        info: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        check_settings(ctx, threads, batch)
        if threads is None:
            from meltbench.environment import physical_cores

            threads = physical_cores()
        import llama_cpp

        bad = self.invalid_options(options or {})
        if bad:
            raise ValueError(bad)

        self._lib = llama_cpp
        self.path = Path(path)
        self.n_ctx = int(ctx)
        self.threads = int(threads)
        self.batch = min(int(batch), self.n_ctx)
        self._info = dict(info or {})
        self._options = dict(options or {})
        self._batch: Any = None
        self._llm: Any = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=self.n_ctx,
            n_batch=self.batch,
            n_ubatch=self.batch,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            logits_all=False,
            verbose=False,
            **self._options,
        )
        self.n_vocab = int(self._llm.n_vocab())
        batch_struct = llama_cpp.llama_batch_init(self.batch, 0, 1)
        if batch_struct is None or not batch_struct.token:
            self.close()
            raise RuntimeError(f"llama.cpp could not allocate a batch of {self.batch} tokens")
        self._batch = batch_struct

    #: the ``Llama()`` keywords this source sets itself (``-o`` cannot change them).
    OWN_KEYWORDS = frozenset(
        {"model_path", "n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch",
         "logits_all", "verbose"}
    )  # fmt: skip

    @classmethod
    def invalid_options(cls, options: Mapping[str, Any]) -> str | None:
        """Why ``options`` cannot be passed to ``llama_cpp.Llama`` (None if they can).

        ``Llama.__init__`` takes ``**kwargs`` and ignores unknown names silently, so a
        misspelt option would change nothing; the names are checked against its
        signature instead.
        """
        import inspect

        import llama_cpp

        params = inspect.signature(llama_cpp.Llama.__init__).parameters
        named = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD} - {"self"}
        unknown = sorted(set(options) - named)
        if unknown:
            return (
                f"-o {', '.join(unknown)}: not an option of llama_cpp.Llama "
                f"(llama-cpp-python {getattr(llama_cpp, '__version__', '?')}); "
                "e.g. flash_attn, type_k, type_v, n_gpu_layers, swa_full"
            )
        own = sorted(set(options) & cls.OWN_KEYWORDS)
        if own:
            return f"-o {', '.join(own)}: set by eval itself; use --ctx or --threads instead"
        return None

    # -- tokens ----------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` by the GGUF's tokenizer, without BOS/EOS.

        ``special=False``: text that looks like a special token (WikiText's literal
        ``<unk>``) is tokenized as ordinary characters, as ``llama-perplexity`` does.
        """
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def bos_token(self) -> int | None:
        """``llama_vocab_bos`` when ``llama_vocab_get_add_bos`` says the model wants it."""
        lib = self._lib
        vocab = lib.llama_model_get_vocab(self._llm.model)
        if not lib.llama_vocab_get_add_bos(vocab):
            return None
        bos = int(lib.llama_vocab_bos(vocab))
        return bos if bos >= 0 else None  # LLAMA_TOKEN_NULL is -1

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of token ids (UTF-8, invalid bytes replaced); lets the lm-eval bridge run
        generation tasks (``generate_until``)."""
        return bytes(self._llm.detokenize([int(i) for i in ids])).decode("utf-8", "replace")

    def eos_token(self) -> int | None:
        """The end-of-generation id (``llama_vocab_eos``), or None."""
        lib = self._lib
        eos = int(lib.llama_vocab_eos(lib.llama_model_get_vocab(self._llm.model)))
        return eos if eos >= 0 else None

    # -- scoring ---------------------------------------------------------------------

    def score(
        self,
        tokens: Sequence[int],
        first: int,
        k: int,
        ref_ids: Any = None,
        *,
        keep_logprobs: bool = False,
        ref_full: Any = None,
    ) -> RowScores:
        """Score positions ``first .. len(tokens) - 2`` of one window (see
        :meth:`LogitsSource.score`), from an empty KV cache.

        Raises:
            ValueError: a window longer than ``n_ctx`` (or shorter than 2), ``first`` out
                of range, ``k < 1``, or ``ref_ids``/``ref_full`` of the wrong shape.
            RuntimeError: ``llama_decode`` failed (its return code is in the message).
        """
        import numpy as np

        if self._llm is None:
            raise RuntimeError("this llama.cpp logits source is closed")
        window = check_window(tokens, first, k, self.n_ctx)
        n = len(window)
        ref = check_ref_ids(ref_ids, n - 1 - first)
        full = check_ref_full(ref_full, n - 1 - first, self.n_vocab)
        lib, ctx, b = self._lib, self._llm.ctx, self._batch
        nxt = np.asarray(window, dtype=np.int64)
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        out_rows = WindowRows(nxt, first, k, self.n_vocab, ref, full, keep_logprobs)
        for start in range(0, n, self.batch):
            stop = min(n, start + self.batch)
            lo, hi = max(first, start), min(n - 1, stop)  # positions [lo, hi) are scored
            b.n_tokens = stop - start
            for i in range(stop - start):
                pos = start + i
                b.token[i] = window[pos]
                b.pos[i] = pos
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = 1 if lo <= pos < hi else 0
            rc = lib.llama_decode(ctx, b)
            if rc != 0:
                raise RuntimeError(
                    f"llama_decode returned {rc} for positions {start}..{stop - 1} "
                    f"(window of {n} tokens, n_ctx {self.n_ctx})"
                )
            if hi <= lo:
                continue
            ptr = lib.llama_get_logits(ctx)
            if not ptr:
                raise RuntimeError("llama.cpp returned no logits")
            rows = np.ctypeslib.as_array(
                ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(hi - lo, self.n_vocab)
            )
            out_rows.add(rows, lo, hi)
        return out_rows.result()

    # -- facts and cleanup -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Engine, library version, model path, quantization type, ``n_vocab``,
        ``n_ctx``, batch and threads (JSON-ready).

        ``quant`` is the GGUF's ``general.file_type`` read by llama.cpp (no extra file
        read), else the resolver's ``info["quant"]``.
        """
        facts: dict[str, Any] = {
            "engine": self.engine,
            "library": "llama-cpp-python",
            "version": getattr(self._lib, "__version__", None),
            "model_path": str(self.path),
            "model_name": self._info.get("name"),
            "quant": self._info.get("quant"),
            "dtype": None,
            "n_vocab": self.n_vocab,
            "n_ctx": self.n_ctx,
            "batch": self.batch,
            "threads": self.threads,
        }
        if self._options:
            facts["options"] = {k: v for k, v in self._options.items() if _jsonable(v)}
        if self._llm is not None:
            metadata = getattr(self._llm, "metadata", None) or {}
            quant = _quant_name(metadata.get("general.file_type"))
            facts["quant"] = quant or facts["quant"]
            facts["model_name"] = facts["model_name"] or metadata.get("general.name")
            desc = ctypes.create_string_buffer(256)
            self._lib.llama_model_desc(self._llm.model, desc, len(desc))
            facts["model_desc"] = desc.value.decode(errors="replace")
        return facts

    def close(self) -> None:
        """Free the batch, the context and the model (idempotent)."""
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def __enter__(self) -> LlamaCppLogits:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
