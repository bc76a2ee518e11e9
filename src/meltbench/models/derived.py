"""Cached conversions of a GGUF that engines ask for on the fly (an alias run on
transformers, ONNX Runtime GenAI, MNN, ExecuTorch or LiteRT-LM).

Every runtime format is built from the GGUF's dequantized Hugging Face folder by that
runtime's own converter (:data:`HF_BUILDS`).

Derived folders are cached under ``cache_dir()/derived``, keyed by the source file's
path, size and modification time (:func:`meltbench.models.cache.source_key`), and written
atomically (built in a temporary folder, then renamed), so an interrupted conversion is
never used.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

from meltbench.models.cache import cache_dir, source_key

__all__ = [
    "HF_BUILDS",
    "build_from_hf",
    "cached_from_gguf",
    "cached_hf_from_gguf",
    "cached_onnx_from_gguf",
]

#: model format -> (``"module:function"`` building it from a Hugging Face folder as
#: ``function(hf_dir, out, precision=...)``, default precision, cache-name suffix, the
#: file inside the built folder that is the model, or "" when the folder is).
HF_BUILDS: dict[str, tuple[str, str, str, str]] = {
    "onnx-genai": ("meltbench.models.onnx_build:build_genai", "int4", "onnx", ""),
    "mnn": ("meltbench.models.mnn_build:build_mnn", "int4", "mnn", ""),
    "pte": ("meltbench.models.pte_build:build_pte", "8da4w", "pte", "model.pte"),
}


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


def build_from_hf(fmt: str, hf_dir: Path, out: Path, precision: str | None = None) -> None:
    """Build ``fmt`` (a key of :data:`HF_BUILDS`) from a Hugging Face folder into ``out``.

    Raises:
        UsageError: from the builder (unknown precision, converter not installed, a
            failed conversion).
    """
    target, default, _, _ = HF_BUILDS[fmt]
    module, _, function = target.partition(":")
    builder = getattr(importlib.import_module(module), function)
    builder(hf_dir, out, precision=precision or default)


def cached_from_gguf(gguf: Path, fmt: str, precision: str | None = None) -> Path:
    """``gguf`` in format ``fmt`` (a key of :data:`HF_BUILDS`), built once from its Hugging
    Face folder and cached."""
    _, default, suffix, inside = HF_BUILDS[fmt]
    precision = precision or default
    hf = cached_hf_from_gguf(gguf)
    folder = _cached(
        f"{gguf.stem}-{source_key(gguf)}-{suffix}-{precision}",
        lambda out: build_from_hf(fmt, hf, out, precision),
    )
    return folder / inside if inside else folder


def cached_onnx_from_gguf(gguf: Path, precision: str = "int4") -> Path:
    """An ONNX Runtime GenAI folder of ``gguf`` (via its HF folder), built once and cached."""
    return cached_from_gguf(gguf, "onnx-genai", precision)
