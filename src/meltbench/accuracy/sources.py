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

from collections.abc import Mapping
from typing import Any

from meltbench.accuracy.base import LogitsSource, check_settings
from meltbench.errors import UsageError

__all__ = ["ACCURACY_ENGINES", "open_source"]

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
    options: Mapping[str, Any] | None = None,
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
        options: llama.cpp only: keyword arguments for ``llama_cpp.Llama`` (``-o``:
            ``flash_attn=true``, ``type_k=8``, ``n_gpu_layers=99``, ...), e.g. to match
            the settings of a ``llama-perplexity`` run.

    Raises:
        UsageError: (one line) an engine without a logits source, its library not
            installed, a bad ``ctx``/``threads``/``batch``/``dtype``, an option the
            engine does not take, or a model the engine cannot load (from
            ``resolve_model``).
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

        bad = LlamaCppLogits.invalid_options(options or {})
        if bad:
            raise UsageError(bad)
        return LlamaCppLogits(
            resolved.path,  # type: ignore[arg-type]
            ctx=ctx,
            threads=threads,
            batch=batch,
            info=resolved.info,
            options=options,
        )

    if options:
        raise UsageError(
            f"-o {', '.join(sorted(options))}: engine options apply to llama.cpp's logits "
            "source only; drop them for --engine transformers"
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
