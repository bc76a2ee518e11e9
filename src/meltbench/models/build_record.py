"""The record meltbench writes beside a model it built, and the checks that read it.

A converter (:mod:`meltbench.models.onnx_build`, :mod:`~meltbench.models.mnn_build`,
:mod:`~meltbench.models.pte_build`) writes what it did as JSON: ``meltbench.json`` inside
a model folder (ONNX Runtime GenAI, MNN-LLM), ``NAME.json`` beside a single-file model
(``model.pte`` -> ``model.json``). Keys used by readers: ``precision`` (the ``--dtype`` it
was built with), ``name``, ``architecture``, ``n_params``, ``bos_token_id``, ``source``.
A model another tool made has no record: readers get ``{}`` and say "unknown".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError

__all__ = [
    "check_dtype",
    "read_build_record",
    "record_path",
    "source_fields",
    "write_build_record",
]


def record_path(model: Path) -> Path:
    """Where the record of ``model`` lies: ``model/meltbench.json`` for a folder,
    ``model`` with the suffix ``.json`` for a file."""
    return model / "meltbench.json" if model.is_dir() else model.with_suffix(".json")


def read_build_record(model: Path) -> dict[str, Any]:
    """The record of ``model`` as a dict; ``{}`` when there is none or it is not a JSON
    object (a model meltbench did not build)."""
    try:
        data = json.loads(record_path(model).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_build_record(model: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as the record of ``model`` (indented JSON, one trailing newline).

    Raises:
        OSError: if the file cannot be written.
    """
    record_path(model).write_text(json.dumps(record, indent=2) + "\n")


def source_fields(hf_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The record's facts of the Hugging Face folder a model was exported from.

    Args:
        hf_dir: the source folder.
        config: its ``config.json`` (:func:`meltbench.models.hf_info.read_hf_config`).

    Returns:
        ``source`` (the folder, absolute), ``name`` (``_name_or_path``, else the folder's
        name), ``architecture`` (the first of ``architectures``, else ``model_type``),
        ``vocab_size`` and ``bos_token_id`` (from ``text_config`` for multimodal configs;
        None when absent).
    """
    text = config.get("text_config") or config
    return {
        "source": str(Path(hf_dir).resolve()),
        "name": config.get("_name_or_path") or Path(hf_dir).name,
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
        "vocab_size": text.get("vocab_size"),
        "bos_token_id": text.get("bos_token_id", config.get("bos_token_id")),
    }


def check_dtype(dtype: str | None, record: dict[str, Any], model: Path, to: str) -> None:
    """Refuse a ``--dtype`` other than the precision ``model`` was built with.

    Args:
        dtype: the asked ``--dtype`` (None: take what the model holds).
        record: the model's build record (:func:`read_build_record`).
        model: the model's path, for the message.
        to: the ``meltbench convert --to`` format that would build the asked precision.

    Raises:
        UsageError: ``dtype`` is set, the record names a precision, and they differ.
    """
    precision = record.get("precision")
    if dtype is not None and precision is not None and dtype != precision:
        raise UsageError(
            f"--dtype {dtype} but {model} holds {precision} weights; drop --dtype or build "
            f"a {dtype} model with: meltbench convert MODEL --to {to} --dtype {dtype}"
        )
