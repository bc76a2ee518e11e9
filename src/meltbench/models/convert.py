"""``meltbench convert``: a model (alias, GGUF, HF folder) to another format.

- GGUF -> Hugging Face folder (dequantized safetensors): :mod:`meltbench.models.hf_export`.
- Hugging Face folder -> ONNX Runtime GenAI folder (int4 or fp32, offline), through
  onnxruntime-genai's model builder: :mod:`meltbench.models.onnx_build`.
- Hugging Face folder -> the formats phones ship: an MNN-LLM folder
  (:mod:`meltbench.models.mnn_build`), an ExecuTorch ``.pte``
  (:mod:`meltbench.models.pte_build`), a LiteRT-LM ``.litertlm``
  (:mod:`meltbench.models.litertlm_build`).
- GGUF -> requantized GGUF: :mod:`meltbench.models.quantize`.

The cached conversions an engine asks for on the fly are :mod:`meltbench.models.derived`.
"""

from __future__ import annotations

from pathlib import Path

from meltbench.errors import UsageError

__all__ = ["TARGETS", "convert"]

#: ``--to`` values.
TARGETS = ("hf", "onnx", "mnn", "pte", "litertlm", "gguf")


def convert(ref: str, to: str, output: Path, dtype: str | None = None) -> Path:
    """Convert a model (alias, GGUF file or HF folder) to ``to`` (``hf``, ``onnx`` or
    ``gguf``: a requantized GGUF, ``dtype`` = the llama.cpp type such as ``Q4_0``).

    Args:
        ref: alias or path of the source.
        to: ``hf`` (from GGUF); ``onnx``, ``mnn``, ``pte`` or ``litertlm`` (from GGUF or
            an HF folder); ``gguf``.
        output: ``hf``, ``onnx``: the folder to create; ``gguf``: the ``.gguf`` file to
            write. It must not exist.
        dtype: ``hf``: ``bfloat16`` (default) or ``float32``; ``onnx``: ``int4``
            (default) or ``fp32``; ``mnn``: ``int4`` (default) or ``int8``; ``pte`` and
            ``litertlm``: see their builders; ``gguf``: the quantization type (required).

    Raises:
        UsageError: unknown target, existing output, or a source of the wrong format.
    """
    from meltbench.models import derived
    from meltbench.models.resolve import resolve_model

    if output.exists():
        raise UsageError(f"output {output} already exists; choose a new folder")
    if to == "hf":
        src = resolve_model(ref, formats=("gguf",))
        from meltbench.models.hf_export import export_gguf_to_hf

        export_gguf_to_hf(src.path, output, dtype=dtype or "bfloat16")  # type: ignore[arg-type]
        return output
    fmt = {"onnx": "onnx-genai"}.get(to, to)
    if fmt in derived.HF_BUILDS:
        src = resolve_model(ref, formats=("hf", "gguf"))
        hf = src.path if src.format == "hf" else derived.cached_hf_from_gguf(src.path)  # type: ignore[arg-type]
        derived.build_from_hf(fmt, hf, output, dtype)  # type: ignore[arg-type]
        return output
    if to == "gguf":
        from meltbench.models.quantize import requantize

        if not dtype:
            raise UsageError("--to gguf needs --dtype QUANT (e.g. Q4_0, Q8_0, Q3_K_M)")
        src = resolve_model(ref, formats=("gguf",))
        return requantize(src.path, output, dtype)  # type: ignore[arg-type]
    raise UsageError(f"unknown conversion target {to!r}; choose one of: {', '.join(TARGETS)}")
