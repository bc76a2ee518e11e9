"""Conversions between model formats, with a cache for the default model's derivatives.

- GGUF -> Hugging Face folder (dequantized safetensors): :mod:`meltbench.models.hf_export`.
- Hugging Face folder -> ONNX Runtime GenAI folder (int4 or fp32, offline), through
  onnxruntime-genai's model builder: :mod:`meltbench.models.onnx_build`.

Derived folders of an alias are cached under ``cache_dir()/derived``, keyed by the
source file's path, size and modification time, and written atomically (built in a
temporary folder, then renamed), so an interrupted conversion is never used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from meltbench.errors import UsageError

__all__ = ["cached_hf_from_gguf", "cached_onnx_from_gguf", "convert", "source_key"]


def source_key(path: Path) -> str:
    """16 hex digits identifying a file by path, size and modification time."""
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _cached(name: str, build: object) -> Path:
    from meltbench.models.resolve import cache_dir

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
        f"{gguf.stem}-{source_key(gguf)}-hf-{dtype}",
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


def convert(ref: str, to: str, output: Path, dtype: str | None = None) -> Path:
    """Convert a model (alias, GGUF file or HF folder) to ``to`` (``hf``, ``onnx`` or
    ``gguf``: a requantized GGUF, ``dtype`` = the llama.cpp type such as ``Q4_0``).

    Args:
        ref: alias or path of the source.
        to: ``hf`` (from GGUF) or ``onnx`` (from GGUF or an HF folder).
        output: ``hf``, ``onnx``: the folder to create; ``gguf``: the ``.gguf`` file to
            write. It must not exist.
        dtype: ``hf``: ``bfloat16`` (default) or ``float32``; ``onnx``: ``int4``
            (default) or ``fp32``; ``gguf``: the quantization type (required).

    Raises:
        UsageError: unknown target, existing output, or a source of the wrong format.
    """
    from meltbench.models.resolve import resolve_model

    if output.exists():
        raise UsageError(f"output {output} already exists; choose a new folder")
    if to == "hf":
        src = resolve_model(ref, formats=("gguf",))
        from meltbench.models.hf_export import export_gguf_to_hf

        export_gguf_to_hf(src.path, output, dtype=dtype or "bfloat16")  # type: ignore[arg-type]
        return output
    if to == "onnx":
        src = resolve_model(ref, formats=("hf", "gguf"))
        from meltbench.models.onnx_build import build_genai

        hf = src.path if src.format == "hf" else cached_hf_from_gguf(src.path)  # type: ignore[arg-type]
        build_genai(hf, output, precision=dtype or "int4")  # type: ignore[arg-type]
        return output
    if to == "gguf":
        from meltbench.models.quantize import requantize

        if not dtype:
            raise UsageError("--to gguf needs --dtype QUANT (e.g. Q4_0, Q8_0, Q3_K_M)")
        src = resolve_model(ref, formats=("gguf",))
        return requantize(src.path, output, dtype)  # type: ignore[arg-type]
    raise UsageError(f"unknown conversion target {to!r}; choose hf, onnx or gguf")
