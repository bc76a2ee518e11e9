"""Model facts from a Hugging Face folder (config.json + safetensors) or an ONNX Runtime
GenAI folder (genai_config.json), read without loading any weights.

Parameter counts come from the safetensors headers: a file starts with an 8-byte
little-endian header length, then a JSON header mapping each tensor name to its dtype,
shape and byte offsets (https://huggingface.co/docs/safetensors, "Format").
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.models.build_record import read_build_record

__all__ = [
    "model_name",
    "read_genai_info",
    "read_hf_config",
    "read_hf_info",
    "read_runtime_info",
    "safetensors_header",
]

_ST_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def read_hf_config(hf_dir: Path) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face folder, as a dict (what the exporters read).

    Raises:
        UsageError: the file is missing or not JSON (one line naming the folder).
    """
    try:
        return json.loads((Path(hf_dir) / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"not a Hugging Face model folder: {hf_dir} ({exc}); pass a folder with config.json"
        ) from exc


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file (tensor name -> dtype, shape, offsets).

    Raises:
        UsageError: if the file is too short or its header is not valid JSON.
    """
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise UsageError(f"not a readable safetensors file: {path} ({exc})") from exc
    if not isinstance(header, dict):
        raise UsageError(f"not a readable safetensors file: {path}")
    return header


def model_name(config: dict[str, Any], folder: Path) -> str:
    """A Hugging Face folder's model name: ``_name_or_path`` (or transformers 5's
    ``_model_name_or_path``) when it is a model id (``google/gemma-3-270m``, "Gemma 3
    270m": at most one ``/``, as gguf-py's ``Metadata`` requires), else the folder's name
    (a saved ``_name_or_path`` is often the local path it was loaded from)."""
    for key in ("_name_or_path", "_model_name_or_path"):
        value = config.get(key)
        if isinstance(value, str) and value.strip() and value.count("/") <= 1:
            return value.strip()
    return folder.name


def read_hf_info(folder: Path) -> dict[str, Any]:
    """Facts of a Hugging Face model folder.

    Returns:
        ``name``, ``architecture`` (config ``model_type``), ``quant`` (the weights'
        dominant dtype, e.g. ``bfloat16``), ``n_params`` (sum of tensor elements over the
        safetensors files, None if there are none), ``size_bytes`` (weights files),
        ``n_ctx_train`` (``max_position_embeddings``), ``path``.

    Raises:
        UsageError: if ``config.json`` is missing or not JSON.
    """
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    text_config = config.get("text_config") or {}
    n_params = 0
    dtypes: Counter[str] = Counter()
    files = sorted(folder.glob("*.safetensors"))
    for f in files:
        for name, entry in safetensors_header(f).items():
            if name == "__metadata__":
                continue
            count = math.prod(entry.get("shape", []))
            n_params += count
            dtypes[_ST_DTYPES.get(entry.get("dtype", ""), entry.get("dtype", "?"))] += count
    return {
        "path": str(folder.resolve()),
        "name": model_name(config, folder),
        "architecture": config.get("model_type"),
        "quant": dtypes.most_common(1)[0][0] if dtypes else config.get("torch_dtype"),
        "n_params": n_params or None,
        "size_bytes": sum(f.stat().st_size for f in files) or None,
        "n_ctx_train": config.get("max_position_embeddings")
        or text_config.get("max_position_embeddings"),
    }


def read_genai_info(folder: Path) -> dict[str, Any]:
    """Facts of an ONNX Runtime GenAI folder: ``name``, ``architecture`` (the GenAI model
    type), ``quant`` (from ``meltbench.json`` if meltbench built the folder, else None),
    ``size_bytes`` (ONNX files and external data), ``n_params`` (None: not stored).

    Raises:
        UsageError: if ``genai_config.json`` is missing or not JSON.
    """
    try:
        config = json.loads((folder / "genai_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {folder / 'genai_config.json'}: {exc}") from exc
    built = read_build_record(folder)
    weights = [
        f
        for f in folder.iterdir()
        if f.suffix in (".onnx", ".data") or f.name.endswith(".onnx.data")
    ]
    return {
        "path": str(folder.resolve()),
        "name": built.get("name") or folder.name,
        "architecture": (config.get("model") or {}).get("type"),
        "quant": built.get("precision"),
        "n_params": built.get("n_params"),
        "size_bytes": sum(f.stat().st_size for f in weights) or None,
        "n_ctx_train": (config.get("model") or {}).get("context_length"),
    }


def read_runtime_info(path: Path, fmt: str) -> dict[str, Any]:
    """Facts of an MNN folder, ``.pte`` or ``.litertlm`` file: ``name``, ``architecture``,
    ``quant`` and ``n_params`` from the ``meltbench.json`` meltbench wrote beside it
    (None when another tool made it), ``size_bytes`` of the weights."""
    built = read_build_record(path)
    if path.is_dir():
        size = sum(f.stat().st_size for f in path.iterdir() if f.name.startswith("llm.mnn"))
    else:
        size = path.stat().st_size
    return {
        "path": str(path.resolve()),
        "name": built.get("name") or path.stem,
        "architecture": built.get("architecture"),
        "quant": built.get("precision"),
        "n_params": built.get("n_params"),
        "size_bytes": size or None,
        "format": fmt,
    }
