"""GGUF -> Hugging Face folder (config.json, dequantized safetensors, tokenizer).

transformers reads a GGUF file itself (``from_pretrained(folder, gguf_file=name)``, which
needs ``accelerate``) and dequantizes every tensor to a torch dtype
(``transformers.modeling_gguf_pytorch_utils.load_gguf_checkpoint``). The model it returns
carries a ``quantization_config`` of ``quant_method="gguf"``, and transformers refuses to
``save_pretrained`` such a model. So the export builds a fresh model from the same config
with ``quantization_config`` removed, on the ``meta`` device (no memory), assigns the
dequantized state dict to it, casts to the requested dtype and saves it as safetensors,
together with the generation config and the tokenizer read from the same GGUF file.

Measured on a 2-core machine for Gemma 3 270M Q4_K_M (262,144-token vocabulary): about
1 minute, and a 536 MB folder in bfloat16 (safetensors shares the tied embedding/LM head
tensor once).
"""

from __future__ import annotations

from pathlib import Path

from meltbench.errors import UsageError

__all__ = ["EXPORT_DTYPES", "export_gguf_to_hf"]

#: dtypes the exported safetensors can be written in.
EXPORT_DTYPES = ("bfloat16", "float32")


def export_gguf_to_hf(gguf_path: Path, out_dir: Path, dtype: str = "bfloat16") -> None:
    """Write a dequantized Hugging Face folder of a GGUF model to ``out_dir``.

    Args:
        gguf_path: a GGUF file of an architecture transformers can read from GGUF
            (``transformers.integrations.ggml.GGUF_SUPPORTED_ARCHITECTURES``: llama,
            qwen2, gemma3, mamba, ...).
        out_dir: folder to write (created if missing; existing files of the same names
            are overwritten). Gets ``config.json``, ``generation_config.json``,
            ``model.safetensors`` and the tokenizer files.
        dtype: ``bfloat16`` (default, half the size) or ``float32`` (the exact values
            of the dequantized GGUF tensors, which transformers computes in float32).

    Raises:
        UsageError: unknown ``dtype``, missing file, ``torch``/``transformers``/
            ``accelerate`` not installed, or a GGUF file transformers cannot read
            (unsupported architecture or quantization type).
    """
    if dtype not in EXPORT_DTYPES:
        raise UsageError(f"cannot export to dtype {dtype!r}; choose: {', '.join(EXPORT_DTYPES)}")
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise UsageError(f"GGUF file not found: {gguf_path}; pass an existing .gguf file")
    try:
        import accelerate  # noqa: F401 - transformers needs it to load GGUF files
        import torch
        import transformers
    except ImportError as exc:
        raise UsageError(
            f"converting GGUF to a Hugging Face folder needs {exc.name}, which is not "
            "installed; pip install 'meltbench[torch]'"
        ) from exc

    folder, name = str(gguf_path.resolve().parent), gguf_path.name
    try:
        loaded = transformers.AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            folder, gguf_file=name, local_files_only=True
        )
    except MemoryError:
        raise
    except Exception as exc:  # transformers raises many types for a file it cannot map
        raise UsageError(
            f"transformers cannot read {gguf_path} ({_one_line(exc)}); use a GGUF of an "
            "architecture and quantization type transformers supports"
        ) from exc

    config = loaded.config
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    target = getattr(torch, dtype)
    config.dtype = target
    state = loaded.state_dict()
    with torch.device("meta"):
        fresh = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # assign=True adopts the dequantized tensors instead of copying them into new storage
    missing, unexpected = fresh.load_state_dict(state, strict=False, assign=True)
    if unexpected or [k for k in missing if not _is_tied(fresh, k)]:
        raise UsageError(
            f"GGUF tensors of {gguf_path} do not match the {config.model_type} architecture "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    fresh.tie_weights()
    del loaded, state
    fresh = fresh.to(target)
    fresh.generation_config = transformers.GenerationConfig.from_model_config(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _keep_name(gguf_path, out_dir / "config.json")


def _keep_name(gguf_path: Path, config_file: Path) -> None:
    """Record the GGUF's ``general.name`` as ``_name_or_path`` in ``config.json``: the key
    that transformers, llama.cpp's ``convert_hf_to_gguf.py`` (gguf-py's ``Metadata``) and
    :func:`meltbench.models.hf_info.read_hf_info` take the model's name from, so a folder
    named ``hf`` stays "Gemma 3 270m" and does not become "Hf" (issue 20)."""
    import json

    from meltbench.models.cache import cached_gguf_info

    name = cached_gguf_info(gguf_path).name
    if not name:
        return
    config = json.loads(config_file.read_text())
    config["_name_or_path"] = name
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception's message on one line (whitespace collapsed), at most ``limit`` chars."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_tied(model: object, key: str) -> bool:
    """Whether ``key`` is a tied parameter (e.g. ``lm_head.weight`` = embeddings)."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return key in tied
