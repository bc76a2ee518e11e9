"""Cached conversions of a GGUF that engines ask for on the fly (an alias run on
transformers or ONNX Runtime GenAI).

Derived folders are cached under ``cache_dir()/derived``, keyed by the source file's
path, size and modification time (:func:`meltbench.models.cache.source_key`), and written
atomically (built in a temporary folder, then renamed), so an interrupted conversion is
never used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from meltbench.models.cache import cache_dir, source_key

__all__ = ["cached_hf_from_gguf", "cached_onnx_from_gguf"]


def _cached(name: str, build: object) -> Path:
    target = cache_dir() / "derived" / name
    if target.is_dir():
        return target
    # A per-process partial folder: two processes converting at once never share one.
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        build(tmp)  # type: ignore[operator]
        tmp.rename(target)
    except OSError:
        if not target.is_dir():  # lost a race: the other process's result is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def cached_hf_from_gguf(gguf: Path, dtype: str = "bfloat16") -> Path:
    """A dequantized Hugging Face folder of ``gguf``, built once and cached."""
    from meltbench.models.hf_export import export_gguf_to_hf

    return _cached(
        f"{gguf.stem}-{source_key(gguf)}-hf2-{dtype}",  # hf2: config.json keeps the name
        lambda out: export_gguf_to_hf(gguf, out, dtype=dtype),
    )


def cached_onnx_from_gguf(gguf: Path, precision: str = "int4") -> Path:
    """An ONNX Runtime GenAI folder of ``gguf`` (via its HF folder), built once and cached."""
    from meltbench.models.onnx_build import build_genai

    hf = cached_hf_from_gguf(gguf)
    return _cached(
        f"{gguf.stem}-{source_key(gguf)}-onnx-{precision}",
        lambda out: build_genai(hf, out, precision=precision),
    )
