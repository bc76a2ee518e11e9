"""Hugging Face folder -> MNN-LLM folder, offline, with MNN's exporter (``llmexport``, the
PyPI package of MNN's ``transformers/llm/export/llmexport.py``).

The exporter traces the model to ONNX and converts it with MNN's converter into
``llm.mnn`` (the graph), ``llm.mnn.weight`` (block-quantized weights), ``config.json``
(the runtime's settings), ``llm_config.json`` (the model's shape) and ``tokenizer.mtok``.
It runs in a child process (:mod:`meltbench.models.child_build`). Two packaging problems of
llmexport 0.0.5 / mnn 3.6.1 are worked around there, both found on this machine:

- the ``llmexport`` console script fails with ``ModuleNotFoundError: No module named
  'utils'`` (``llmexport.py`` imports ``utils.model`` from its own folder), so the child
  puts that folder on ``sys.path`` and calls ``llmexport.main()``;
- ``MNN.tools.mnnconvert`` imports ``MNN.tools.utils.log``, whose import runs ``pip install
  -U aliyun-log-python-sdk`` (which downgrades protobuf below what onnx needs) and then
  sends usage logs to a server. The child blocks that module (``sys.modules[...] =
  None``); mnnconvert then runs without its logger, as it does when the import fails.

Precisions (``--dtype``): ``int4`` (llmexport's default: 4-bit asymmetric weights in
blocks of 64, the LM head too) and ``int8``. Measured here for Gemma 3 270M: int4 about
2.5 minutes and 172 MB, int8 about 2 minutes and 299 MB (4.7 GB peak memory).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.models.build_record import source_fields, write_build_record
from meltbench.models.child_build import child_main, run_child
from meltbench.models.hf_info import read_hf_config

__all__ = ["MNN_PRECISIONS", "build_mnn", "check_mnn_folder", "is_mnn_folder"]

#: ``--dtype`` -> llmexport's ``--quant_bit``.
MNN_PRECISIONS: dict[str, int] = {"int4": 4, "int8": 8}
#: llmexport's default block size (weights quantized in blocks of 64 along the input).
QUANT_BLOCK = 64


def is_mnn_folder(path: Path) -> bool:
    """Whether ``path`` is an MNN-LLM folder (``llm_config.json`` and ``config.json``)."""
    return (
        path.is_dir() and (path / "llm_config.json").is_file() and (path / "config.json").is_file()
    )


def check_mnn_folder(path: Path) -> None:
    """Check that ``path`` holds a loadable MNN-LLM folder: ``config.json`` and
    ``llm_config.json`` are JSON objects and the graph and weight files that
    ``config.json`` names (``llm_model``, ``llm_weight``; default ``llm.mnn``,
    ``llm.mnn.weight``) exist and are not empty.

    Raises:
        UsageError: one line naming the file that is missing or unreadable.
    """
    for name in ("config.json", "llm_config.json"):
        try:
            data = json.loads((path / name).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"not an MNN-LLM folder: {path / name} is not readable JSON ({exc}); "
                "export the model again with: meltbench convert MODEL --to mnn"
            ) from exc
        if not isinstance(data, dict):
            raise UsageError(f"not an MNN-LLM folder: {path / name} is not a JSON object")
        if name == "config.json":
            config = data
    for key, default in (("llm_model", "llm.mnn"), ("llm_weight", "llm.mnn.weight")):
        file = path / str(config.get(key) or default)
        if not file.is_file() or file.stat().st_size == 0:
            raise UsageError(
                f"MNN-LLM folder {path} has no {file.name} (config.json {key}); export the "
                "model again with: meltbench convert MODEL --to mnn"
            )


def build_mnn(hf_dir: Path, out_dir: Path, precision: str = "int4") -> None:
    """Export a local Hugging Face folder to an MNN-LLM folder, offline.

    Args:
        hf_dir: a Hugging Face folder (``config.json``, safetensors, tokenizer files) of
            an architecture llmexport knows (Llama, Qwen2/3, Gemma 2/3, ...).
        out_dir: the folder to write (the exporter's files plus ``meltbench.json`` with
            ``precision``, ``source``, ``name``, ``vocab_size``, ``bos_token_id``);
            removed again on failure if this call created it.
        precision: a key of :data:`MNN_PRECISIONS`.

    Raises:
        UsageError: unknown precision, no ``config.json``, mnn or llmexport not
            installed, or an export that fails (one line with the exporter's error).
    """
    if precision not in MNN_PRECISIONS:
        raise UsageError(
            f"unknown MNN precision {precision!r}; choose one of: {', '.join(MNN_PRECISIONS)}"
        )
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    config = read_hf_config(hf_dir)
    missing = [m for m in ("MNN", "llmexport") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"exporting to MNN needs {', '.join(missing)}, which is not installed; "
            "pip install 'meltbench[mnn]'"
        )
    created = not out_dir.exists()
    try:
        job = {"hf_dir": str(hf_dir.resolve()), "out_dir": str(out_dir.resolve()),
               "quant_bit": MNN_PRECISIONS[precision]}  # fmt: skip
        run_child("meltbench.models.mnn_build", job,
                  f"MNN's llmexport cannot convert {hf_dir}")  # fmt: skip
        if not is_mnn_folder(out_dir):
            raise UsageError(f"MNN's llmexport wrote no llm_config.json for {hf_dir}")
        meta = {
            "precision": precision,
            "quant_block": QUANT_BLOCK,
            **source_fields(hf_dir, config),
        }
        write_build_record(out_dir, meta)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _child(job: dict[str, Any]) -> None:
    """Run llmexport in this process (the child), with the two workarounds above."""
    sys.modules["MNN.tools.utils.log"] = None  # type: ignore[assignment]
    spec = importlib.util.find_spec("llmexport")
    if spec is None or spec.origin is None:
        raise ImportError("llmexport is not installed")
    sys.path.insert(0, str(Path(spec.origin).parent))
    sys.modules.pop("llmexport", None)
    import llmexport  # now the module llmexport.py in that folder, not the package

    sys.argv = ["llmexport", "--path", job["hf_dir"], "--export", "mnn",
                "--quant_bit", str(job["quant_bit"]), "--quant_block", str(QUANT_BLOCK),
                "--dst_path", job["out_dir"]]  # fmt: skip
    llmexport.main()


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], _child))
