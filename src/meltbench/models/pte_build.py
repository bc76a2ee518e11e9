"""Hugging Face folder -> ExecuTorch ``.pte`` LLM program, offline, with optimum-executorch
(``optimum.exporters.executorch.main_export``, the code behind ``optimum-cli export
executorch --model DIR --task text-generation --recipe xnnpack``).

The export runs in a child process (:mod:`meltbench.models.child_build`) with
``local_files_only``. Settings, by ``--dtype``:

- ``8da4w`` (default): ExecuTorch's recommended LLM recipe for CPUs: linear layers with
  8-bit dynamic activations and 4-bit weights (``qlinear="8da4w"``, torchao), the custom
  SDPA operator (``use_custom_sdpa``), XNNPACK;
- ``float32``: the same without quantization.

The custom KV-cache operator (``use_custom_kv_cache``) is not used: optimum-executorch
1.1's implementation subclasses ``transformers.cache_utils.HybridCache``, which
transformers 5.25 no longer has (``ImportError: transformers is not installed. Please
install it to use Static/HybridCache.``); the KV cache is then transformers' static cache,
exported as mutable buffers.

``max_seq_len`` (the KV cache, tokens) is 1024 unless asked otherwise. A sidecar JSON
(``model.json`` beside ``model.pte``) records the precision, recipe, source and BOS id.

optimum-executorch 1.1 declares ``transformers==5.0.0rc1``; it is installed without its
dependencies (``pip install --no-deps optimum-executorch``) beside meltbench's newer
transformers, with which the export works (checked on this machine with 5.25).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.models.build_record import source_fields, write_build_record
from meltbench.models.child_build import child_main, run_child
from meltbench.models.hf_info import read_hf_config

__all__ = ["PTE_PRECISIONS", "build_pte"]

#: ``--dtype`` -> optimum-executorch keyword arguments.
PTE_PRECISIONS: dict[str, dict[str, Any]] = {
    "8da4w": {"qlinear": "8da4w", "use_custom_sdpa": True},
    "float32": {"use_custom_sdpa": True},
}
#: the KV cache of the exported program, tokens.
MAX_SEQ_LEN = 1024


def build_pte(hf_dir: Path, out: Path, precision: str = "8da4w",
              max_seq_len: int = MAX_SEQ_LEN) -> None:  # fmt: skip
    """Export a local Hugging Face folder to an ExecuTorch program ``out`` (a file).

    Args:
        hf_dir: a Hugging Face folder of a decoder optimum-executorch exports (Llama,
            Qwen, Gemma 3, ...).
        out: the ``.pte`` file to write, or a folder to write ``model.pte`` into; its
            sidecar ``.json`` goes beside it. Nothing is left behind on failure.
        precision: a key of :data:`PTE_PRECISIONS`.
        max_seq_len: the program's KV cache, tokens.

    Raises:
        UsageError: unknown precision, no ``config.json``, optimum-executorch or
            executorch not installed, or an export that fails (one line).
    """
    if precision not in PTE_PRECISIONS:
        raise UsageError(
            f"unknown ExecuTorch precision {precision!r}; choose one of: "
            f"{', '.join(PTE_PRECISIONS)}"
        )
    hf_dir, out = Path(hf_dir), Path(out)
    if out.suffix != ".pte":  # a folder: model.pte and model.json inside
        out = out / "model.pte"
    config = read_hf_config(hf_dir)
    missing = [m for m in ("executorch", "optimum.exporters.executorch") if _missing(m)]
    if missing:
        raise UsageError(
            f"exporting to ExecuTorch needs {', '.join(missing)}, which is not installed; "
            "pip install 'meltbench[executorch]' && pip install --no-deps optimum-executorch"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meltbench-pte-", dir=out.parent) as tmp:
        job = {"hf_dir": str(hf_dir.resolve()), "out_dir": str(Path(tmp).resolve()),
               "max_seq_len": max_seq_len,
               "options": PTE_PRECISIONS[precision]}  # fmt: skip
        run_child("meltbench.models.pte_build", job,
                  f"optimum-executorch cannot export {hf_dir}")  # fmt: skip
        written = sorted(Path(tmp).glob("*.pte"))
        if not written:
            raise UsageError(f"optimum-executorch wrote no .pte for {hf_dir}")
        meta = {
            "precision": precision,
            "recipe": {
                "recipe": "xnnpack",
                "max_seq_len": max_seq_len,
                **PTE_PRECISIONS[precision],
            },
            **source_fields(hf_dir, config),
        }
        write_build_record(out, meta)
        shutil.move(str(written[0]), out)


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def _child(job: dict[str, Any]) -> None:
    """Run optimum-executorch's export in this process (the child)."""
    from optimum.exporters.executorch import main_export

    main_export(model_name_or_path=job["hf_dir"], task="text-generation", recipe="xnnpack",
                output_dir=job["out_dir"], local_files_only=True,
                max_seq_len=job["max_seq_len"], **job["options"])  # fmt: skip


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], _child))
