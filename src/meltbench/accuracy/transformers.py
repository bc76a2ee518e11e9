"""PyTorch + transformers as a logits source (``pip install 'meltbench[torch]'``).

The model is loaded as the transformers engine loads it
(``AutoModelForCausalLM.from_pretrained`` with ``local_files_only=True``: a Hugging Face
folder, or a GGUF file through ``gguf_file=``, dequantized on load), put in eval mode,
and run under ``torch.inference_mode()``.

Precision: the default ``dtype`` is ``float32``, for accuracy: every weight and
activation in float32, whatever the stored dtype. The default model's alias resolves to
its cached Hugging Face folder, whose weights are the dequantized Q4_K_M values stored
in bfloat16 (:func:`meltbench.models.derived.cached_hf_from_gguf`): rounding the
dequantized weights to bfloat16 changed the perplexity of Gemma 3 270M on 12,000
characters of WikiText-2 by under 0.01% (18.4373 from the folder, 18.4387 from the GGUF
dequantized straight to float32), far below the 0.2% between this engine and llama.cpp.
``bfloat16``/``float16`` are accepted (faster, less exact).

Method, per window: an empty ``transformers.DynamicCache(config=model.config)``, then one
forward per run of ``batch`` tokens into that cache, with ``logits_to_keep`` set so that
only the scored positions of the run go through the LM head; each run's logits
(``<= batch x n_vocab``, converted to float32 numpy) are reduced at once with
:func:`meltbench.accuracy.scoring.reduce_rows`. Memory for logits is thus bounded by
``batch x n_vocab`` float32 (128 MiB for Gemma 3 at batch 128), whatever the window.
Models whose cached continuation is known not to equal one forward (Mamba v1 mixers:
``mamba``, ``falcon_mamba``, ``jamba``, ``bamba``; see the transformers engine's
docstring) are run with one forward per window instead, holding the logits of every
scored position of the window.

Tokenization: ``tokenizer(text, add_special_tokens=False, split_special_tokens=True)``.
``split_special_tokens`` makes text that looks like a special token ordinary text:
WikiText's literal ``<unk>`` would otherwise become the ``<unk>`` token (id 3 in Gemma 3)
instead of the characters ``<``, ``unk``, ``>`` that llama.cpp (``special=False``)
produces; with it the two engines give identical ids for the whole WikiText-2 test split
(310,431 tokens) from the same GGUF's vocabulary.

``threads`` is applied with ``torch.set_num_threads``, which is process-wide.
"""

from __future__ import annotations

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
from meltbench.engines.transformers import cache_keyword

__all__ = ["DTYPES", "TransformersLogits"]

#: dtypes the model can be run in (``float32`` is the default).
DTYPES = ("float32", "bfloat16", "float16")

#: model types whose cached (chunked) evaluation differs from one forward: one forward
#: per window for these.
_ONE_FORWARD = frozenset({"mamba", "falcon_mamba", "jamba", "bamba"})


class TransformersLogits(LogitsSource):
    """Next-token scores computed by a transformers model (see the module docstring).

    Args:
        path: a Hugging Face folder (``fmt="hf"``) or a GGUF file (``fmt="gguf"``).
        fmt: ``hf`` or ``gguf``.
        ctx: the longest window :meth:`score` accepts, tokens.
        threads: CPU threads (``torch.set_num_threads``, process-wide); None = physical
            cores (:func:`meltbench.environment.physical_cores`).
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``.
        batch: tokens per forward; the logits of at most this many positions exist at
            once.
        device: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``mps``.
        info: facts about the model from :func:`meltbench.models.resolve.resolve_model`
            (``name``, ``derived_from``), reported by :meth:`describe`; optional.

    Raises:
        ValueError: unknown ``fmt`` or ``dtype``, ``ctx < 2``, ``threads < 1``,
            ``batch < 1``.
        OSError, ValueError (from transformers): model files it cannot read.
        TypeError: a model whose ``forward`` takes no cache
            (:func:`meltbench.engines.transformers.cache_keyword`).
    """

    engine = "transformers"

    def __init__(
        self,
        path: str | Path,
        *,
        fmt: str = "hf",
        ctx: int = 512,
        threads: int | None = None,
        dtype: str | None = None,
        batch: int = 128,
        device: str = "cpu",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        dtype = dtype or "float32"
        if fmt not in ("hf", "gguf"):
            raise ValueError(f"transformers logits load 'hf' or 'gguf' models, not {fmt!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        check_settings(ctx, threads, batch)
        import torch
        import transformers

        self._torch = torch
        self.path = Path(path)
        self.format = fmt
        self.n_ctx = int(ctx)
        self.batch = min(int(batch), self.n_ctx)
        self.dtype = dtype
        self.device = device
        self._info = dict(info or {})
        if threads is None:
            from meltbench.environment import physical_cores

            threads = physical_cores()
        torch.set_num_threads(int(threads))
        self.threads = torch.get_num_threads()

        torch_dtype = getattr(torch, dtype)
        auto_model, auto_tok = transformers.AutoModelForCausalLM, transformers.AutoTokenizer
        if fmt == "hf":
            where, extra = str(self.path), {}
        else:
            where, extra = str(self.path.parent), {"gguf_file": self.path.name}
        net = auto_model.from_pretrained(where, dtype=torch_dtype, local_files_only=True, **extra)
        self._model: Any = net.to(device).eval()
        self._tokenizer: Any = auto_tok.from_pretrained(where, local_files_only=True, **extra)

        config = net.config
        text_config = (
            config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        )
        self.n_vocab = int(text_config.vocab_size)
        self.model_type = str(getattr(text_config, "model_type", None) or config.model_type)
        self._cache_kw = cache_keyword(net)
        self._chunked = self.model_type not in _ONE_FORWARD
        self._bos = self._find_bos()

    # -- tokens ----------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS, special-token text as ordinary text
        (see the module docstring)."""
        enc = self._tokenizer(
            text, add_special_tokens=False, split_special_tokens=True, verbose=False
        )
        return [int(t) for t in enc["input_ids"]]

    def _find_bos(self) -> int | None:
        tok = self._tokenizer
        bos = tok.bos_token_id
        if bos is None:
            return None
        if getattr(tok, "add_bos_token", None) is True:
            return int(bos)
        # Gemma's tokenizer says add_bos_token=False yet its template adds BOS: the
        # encoded text decides.
        ids = tok("a", add_special_tokens=True)["input_ids"]
        return int(bos) if ids and int(ids[0]) == int(bos) else None

    def bos_token(self) -> int | None:
        """The tokenizer's ``bos_token_id`` when it adds BOS (``add_bos_token``, or BOS
        at the start of ``tokenizer("a").input_ids``), else None."""
        return self._bos

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of token ids (special tokens kept as text); lets the lm-eval bridge run
        generation tasks (``generate_until``)."""
        return str(self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False))

    def eos_token(self) -> int | None:
        """The tokenizer's ``eos_token_id``, or None."""
        eos = self._tokenizer.eos_token_id
        return int(eos) if eos is not None else None

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
        :meth:`LogitsSource.score`), from an empty cache.

        Raises:
            ValueError: a window longer than ``n_ctx`` (or shorter than 2), ``first`` out
                of range, ``k < 1``, or ``ref_ids``/``ref_full`` of the wrong shape.
        """
        import numpy as np
        import transformers

        if self._model is None:
            raise RuntimeError("this transformers logits source is closed")
        window = check_window(tokens, first, k, self.n_ctx)
        n = len(window)
        ref = check_ref_ids(ref_ids, n - 1 - first)
        full = check_ref_full(ref_full, n - 1 - first, self.n_vocab)
        nxt = np.asarray(window, dtype=np.int64)
        torch = self._torch
        step = self.batch if self._chunked else n
        cache = transformers.DynamicCache(config=self._model.config)
        out_rows = WindowRows(nxt, first, k, self.n_vocab, ref, full, keep_logprobs)
        with torch.inference_mode():
            for start in range(0, n, step):
                stop = min(n, start + step)
                lo, hi = max(first, start), min(n - 1, stop)  # positions [lo, hi) scored
                # logits_to_keep keeps the last positions of the run (0 would keep all).
                keep = stop - lo if hi > lo else 1
                ids = torch.tensor([window[start:stop]], dtype=torch.long, device=self.device)
                out = self._model(
                    input_ids=ids,
                    use_cache=True,
                    logits_to_keep=keep,
                    **{self._cache_kw: cache},
                )
                if hi <= lo:
                    continue
                rows = out.logits[0, : hi - lo].float().cpu().numpy()
                del out
                out_rows.add(rows, lo, hi)
        return out_rows.result()

    # -- facts and cleanup -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Engine, library versions, model path and format, dtype, device, ``n_vocab``,
        ``n_ctx``, batch and threads (JSON-ready)."""
        import transformers

        return {
            "engine": self.engine,
            "library": "transformers",
            "version": transformers.__version__,
            "torch_version": self._torch.__version__,
            "model_path": str(self.path),
            "model_format": self.format,
            "model_name": self._info.get("name"),
            "derived_from": self._info.get("derived_from"),
            "architecture": self.model_type,
            "dtype": self.dtype,
            "device": self.device,
            "n_vocab": self.n_vocab,
            "n_ctx": self.n_ctx,
            "batch": self.batch,
            "threads": self.threads,
        }

    def close(self) -> None:
        """Drop the model and tokenizer (and the CUDA caching allocator's blocks)."""
        self._model = None
        self._tokenizer = None
        torch = self._torch
        if torch is not None and str(self.device).startswith("cuda"):
            torch.cuda.empty_cache()

    def __enter__(self) -> TransformersLogits:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
