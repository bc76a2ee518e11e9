"""Open a :class:`~meltbench.accuracy.base.LogitsSource` for a model and an engine.

Accuracy is measured with the engines that hand out logits for every position:

- ``llama.cpp`` (:class:`~meltbench.accuracy.llama_cpp.LlamaCppLogits`): a GGUF file,
  run with the file's own quantization;
- ``transformers`` (:class:`~meltbench.accuracy.transformers.TransformersLogits`): a
  Hugging Face folder, or a GGUF that is dequantized (the default model's alias resolves
  to its cached dequantized folder, as for ``meltbench run --engine transformers``).

The other engines (ONNX Runtime GenAI, MLX, HTTP servers) are refused with one line. This
module imports no heavy library; the sources import theirs when they are opened.

It also holds what both sources share: :func:`check_window` and :func:`check_ref_ids`
(the argument checks of :meth:`LogitsSource.score`) and :func:`concat_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meltbench.accuracy.base import LogitsSource, RowScores
from meltbench.errors import UsageError

__all__ = ["ACCURACY_ENGINES", "check_ref_ids", "check_window", "concat_rows", "open_source"]

#: engines with a logits source, in the order they are offered.
ACCURACY_ENGINES = ("llama.cpp", "transformers")


def _engine_class(engine: str) -> Any:
    if engine == "llama.cpp":
        from meltbench.engines.llama_cpp import LlamaCppEngine

        return LlamaCppEngine
    from meltbench.engines.transformers import TransformersEngine

    return TransformersEngine


def open_source(
    model: str,
    engine: str = "llama.cpp",
    *,
    ctx: int = 512,
    threads: int | None = None,
    dtype: str | None = None,
    batch: int = 128,
) -> LogitsSource:
    """Resolve ``model`` for ``engine`` and load it as a logits source.

    Args:
        model: a registered alias (e.g. ``gemma3-270m-q4_k_m``) or a path, as for
            ``meltbench run``: a GGUF file for llama.cpp; a Hugging Face folder or a GGUF
            file for transformers (an alias becomes its cached dequantized Hugging Face
            folder through :func:`meltbench.models.resolve.resolve_model`; another GGUF
            path is dequantized by transformers on every load, about 30 s for 270M).
        engine: one of :data:`ACCURACY_ENGINES`.
        ctx: the longest window the source will score, tokens (llama.cpp's ``n_ctx``).
        threads: CPU threads; None = physical cores
            (:func:`meltbench.environment.physical_cores`).
        dtype: transformers only: ``float32`` (None: the default, for accuracy),
            ``bfloat16`` or ``float16``. llama.cpp takes none (the GGUF's quantization
            is its precision).
        batch: tokens evaluated per step; logits are held for at most ``batch``
            positions at a time (``batch x n_vocab`` float32: 128 MiB for Gemma 3).

    Raises:
        UsageError: (one line) an engine without a logits source, its library not
            installed, a bad ``ctx``/``threads``/``batch``/``dtype``, or a model the
            engine cannot load (from ``resolve_model``).
    """
    if engine not in ACCURACY_ENGINES:
        raise UsageError(f"accuracy is measured with llama.cpp or transformers; got {engine!r}")
    try:
        check_settings(ctx, threads, batch)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    engine_cls = _engine_class(engine)
    missing = engine_cls.missing_requirements()
    if missing:
        raise UsageError(
            f"engine {engine!r} needs {', '.join(missing)}, which is not installed; "
            f"install it with: {engine_cls.install_hint}"
        )
    if threads is None:
        from meltbench.environment import physical_cores

        threads = physical_cores()

    from meltbench.models.resolve import resolve_model

    if engine == "llama.cpp":
        if dtype is not None:
            raise UsageError(
                f"engine 'llama.cpp' takes no dtype (got {dtype!r}): its precision is the "
                "GGUF's quantization type; pick another GGUF, or use --engine transformers"
            )
        resolved = resolve_model(model, formats=("gguf",))
        from meltbench.accuracy.llama_cpp import LlamaCppLogits

        return LlamaCppLogits(
            resolved.path,  # type: ignore[arg-type]
            ctx=ctx,
            threads=threads,
            batch=batch,
            info=resolved.info,
        )

    dtype = dtype or "float32"
    if dtype not in engine_cls.dtypes:
        allowed = ", ".join(sorted(engine_cls.dtypes))
        raise UsageError(f"engine 'transformers' has no dtype {dtype!r}; choose: {allowed}")
    resolved = resolve_model(model, formats=("hf", "gguf"))
    from meltbench.accuracy.transformers import TransformersLogits

    return TransformersLogits(
        resolved.path,  # type: ignore[arg-type]
        fmt=resolved.format,
        ctx=ctx,
        threads=threads,
        dtype=dtype,
        batch=batch,
        info=resolved.info,
    )


def check_settings(ctx: int, threads: int | None, batch: int) -> None:
    """Validate a source's window length (``ctx`` >= 2 tokens), ``threads`` (>= 1 or
    None) and ``batch`` (>= 1 token).

    Raises:
        ValueError: naming the setting and the value given.
    """
    if ctx < 2:
        raise ValueError(f"--ctx must be at least 2 tokens, not {ctx}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1 token, not {batch}")


def check_window(tokens: Sequence[int], first: int, k: int, n_ctx: int) -> list[int]:
    """Check the arguments of :meth:`LogitsSource.score`; return the window as ints.

    Raises:
        ValueError: a window shorter than 2 or longer than ``n_ctx`` tokens, ``first``
            outside ``0 .. len(tokens) - 2``, or ``k < 1``.
    """
    window = [int(t) for t in tokens]
    n = len(window)
    if n > n_ctx:
        raise ValueError(f"window of {n} tokens is longer than the context of {n_ctx} tokens")
    if n < 2:
        raise ValueError(f"a window needs at least 2 tokens to score one, got {n}")
    if not 0 <= first <= n - 2:
        raise ValueError(f"first must be in 0..{n - 2} for a window of {n} tokens, got {first}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return window


def check_ref_ids(ref_ids: Any, n_rows: int) -> Any:
    """``ref_ids`` as an int64 array ``(n_rows, k_ref)``, or None.

    Raises:
        ValueError: another shape.
    """
    if ref_ids is None:
        return None
    import numpy as np

    ref = np.asarray(ref_ids)
    if ref.ndim != 2 or ref.shape[0] != n_rows:
        raise ValueError(f"ref_ids must have shape ({n_rows}, k_ref), got {ref.shape}")
    return ref.astype(np.int64, copy=False)


def concat_rows(parts: Sequence[RowScores], k: int, n_vocab: int, k_ref: int | None) -> RowScores:
    """Concatenate per-batch :class:`RowScores` in order (an empty list gives 0 rows).

    ``k`` is clipped to ``n_vocab`` for the empty case, as ``reduce_rows`` clips it.
    """
    import numpy as np

    if not parts:
        kk = min(k, n_vocab) if n_vocab else k
        return RowScores(
            nll=np.zeros(0, dtype=np.float64),
            topk_ids=np.zeros((0, kk), dtype=np.int32),
            topk_logprobs=np.zeros((0, kk), dtype=np.float32),
            ref_logprobs=None if k_ref is None else np.zeros((0, k_ref), dtype=np.float32),
        )
    if len(parts) == 1:
        return parts[0]
    return RowScores(
        nll=np.concatenate([p.nll for p in parts]),
        topk_ids=np.concatenate([p.topk_ids for p in parts]),
        topk_logprobs=np.concatenate([p.topk_logprobs for p in parts]),
        ref_logprobs=(None if k_ref is None else np.concatenate([p.ref_logprobs for p in parts])),
    )
