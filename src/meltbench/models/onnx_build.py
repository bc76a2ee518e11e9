"""Hugging Face folder -> ONNX Runtime GenAI folder, offline, with onnxruntime-genai's
model builder (``onnxruntime_genai.models.builder``, the code behind
``python -m onnxruntime_genai.models.builder -i HF_DIR -o OUT -p int4 -e cpu``).

The builder runs in a child process (``python -m meltbench.models.onnx_build``): it
imports torch and transformers, prints a lot, and holds the whole model in memory, none
of which belongs in the host process. The child runs with ``HF_HUB_OFFLINE=1`` and
``hf_token=false``, so only the local folder is read, and reports success or its error
as JSON in a file; the parent turns an error into one :class:`UsageError` line.

Compatibility shim (transformers 5): transformers 5 stores RoPE settings as
``config.rope_parameters``; for Gemma 3 that is one dict per layer type
(``{"full_attention": {"rope_type", "rope_theta"}, "sliding_attention": {...}}``), while
the builder (0.18) expects the flat form with ``rope_type`` at the top plus
``rope_theta`` / ``rope_local_base_freq`` (transformers 4's layout) and fails with
``KeyError: 'rope_type'``. Rewriting ``config.json`` into the old layout does not help,
because transformers 5 converts the old keys back into ``rope_parameters`` when the
builder loads the config; so the child patches the builder's config loading
(``get_hf_details``) and rewrites the loaded config object instead: ``rope_parameters``
becomes the ``full_attention`` entry, ``rope_theta`` its theta and
``rope_local_base_freq`` the ``sliding_attention`` theta (:func:`compat_config`).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.models.build_record import write_build_record
from meltbench.models.child_build import child_main, run_child
from meltbench.models.hf_info import read_hf_config

__all__ = ["BUILDER_OPTIONS", "PRECISIONS", "build_genai", "compat_config"]

#: builder precisions meltbench offers, for the CPU execution provider.
PRECISIONS = ("int4", "fp32")
#: ``--extra_options`` given to the builder: no Hugging Face token (offline, local
#: folder), and logits of the last prompt token only during prefill (``prune_lm_head``:
#: the LM head is a [hidden x vocab] MatMul, 168M multiply-adds per token for Gemma 3's
#: 262,144-token vocabulary; the other rows are never read by greedy generation, and
#: llama.cpp computes only the last row too).
BUILDER_OPTIONS = {"hf_token": "false", "prune_lm_head": "true"}
#: Python modules the builder needs (onnx_ir is imported by the builder but is not a
#: declared dependency of onnxruntime-genai 0.18).
_BUILDER_MODULES = {
    "onnxruntime_genai": "onnxruntime-genai",
    "onnx": "onnx",
    "onnx_ir": "onnx-ir",
    "torch": "torch",
    "transformers": "transformers",
}


def _architecture(config: dict[str, Any]) -> str:
    archs = config.get("architectures") or []
    return str(archs[0] if archs else config.get("model_type") or "unknown architecture")


def compat_config(config: Any) -> list[str]:
    """Rewrite a loaded transformers config in place into the layout the builder reads.

    Only per-layer-type ``rope_parameters`` (a dict of dicts without ``rope_type``, as
    transformers 5 writes for Gemma 3) are changed; Gemma 4, whose builder reads the
    nested form itself, is left alone. The ``text_config`` of a multimodal config is
    rewritten the same way.

    Args:
        config: a ``transformers.PretrainedConfig`` (or any object with attributes).

    Returns:
        Human-readable descriptions of the changes (empty if none were needed).
    """
    changes: list[str] = []
    targets = [config]
    if getattr(config, "text_config", None) is not None:
        targets.append(config.text_config)
    for target in targets:
        if str(getattr(target, "model_type", "")).startswith("gemma4"):
            continue
        rope = getattr(target, "rope_parameters", None)
        if not isinstance(rope, dict) or "rope_type" in rope:
            continue
        nested = {k: v for k, v in rope.items() if isinstance(v, dict)}
        if not nested:
            continue
        full = nested.get("full_attention") or next(iter(nested.values()))
        target.rope_parameters = dict(full)
        if "rope_theta" in full:
            target.rope_theta = full["rope_theta"]
        local = nested.get("sliding_attention")
        if local and "rope_theta" in local:
            target.rope_local_base_freq = local["rope_theta"]
        changes.append(
            f"{getattr(target, 'model_type', '?')}: per-layer rope_parameters -> "
            f"rope_parameters={target.rope_parameters}, rope_theta="
            f"{getattr(target, 'rope_theta', None)}, rope_local_base_freq="
            f"{getattr(target, 'rope_local_base_freq', None)}"
        )
    return changes


def _missing_modules() -> list[str]:
    return [pkg for mod, pkg in _BUILDER_MODULES.items() if importlib.util.find_spec(mod) is None]


def _count_params(hf_dir: Path) -> int | None:
    from meltbench.models.hf_info import read_hf_info

    try:
        return read_hf_info(hf_dir).get("n_params")
    except UsageError:
        return None


def build_genai(hf_dir: Path, out_dir: Path, precision: str = "int4") -> None:
    """Build an ONNX Runtime GenAI folder from a local Hugging Face folder, offline.

    Args:
        hf_dir: a Hugging Face folder (``config.json``, safetensors weights, tokenizer
            files: the builder loads the tokenizer and copies it to ``out_dir``).
        out_dir: the folder to write (``model.onnx``, ``model.onnx.data``,
            ``genai_config.json``, tokenizer files, and ``meltbench.json`` with
            ``precision``, ``source``, ``name``, ``n_params``). Created if missing;
            removed again on failure if this call created it.
        precision: ``int4`` (MatMulNBits, 4-bit weights with float32 compute) or
            ``fp32``; always for the CPU execution provider.

    Raises:
        UsageError: unknown precision, a folder without ``config.json``, a builder
            dependency that is not installed, or a build that fails (one line naming
            the architecture and the builder's error).
    """
    if precision not in PRECISIONS:
        raise UsageError(
            f"unknown ONNX precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
        )
    hf_dir = Path(hf_dir)
    out_dir = Path(out_dir)
    config = read_hf_config(hf_dir)
    arch = _architecture(config)
    missing = _missing_modules()
    if missing:
        raise UsageError(
            f"building an ONNX model needs {', '.join(missing)}, which is not installed; "
            f"pip install 'meltbench[onnx]' {' '.join(missing)}"
        )
    created = not out_dir.exists()
    try:
        _run_builder(hf_dir, out_dir, precision, arch)
        if not (out_dir / "genai_config.json").is_file():
            raise UsageError(
                f"onnxruntime-genai's model builder wrote no genai_config.json for {arch} "
                f"({hf_dir})"
            )
        meta = {
            "precision": precision,
            "source": str(hf_dir.resolve()),
            "name": hf_dir.name,
            "architecture": arch,
            "n_params": _count_params(hf_dir),
            "execution_provider": "cpu",
            "builder_options": {k: v for k, v in BUILDER_OPTIONS.items() if k != "hf_token"},
        }
        write_build_record(out_dir, meta)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _run_builder(hf_dir: Path, out_dir: Path, precision: str, arch: str) -> None:
    job = {
        "hf_dir": str(hf_dir.resolve()),
        "out_dir": str(out_dir.resolve()),
        "precision": precision,
    }
    run_child(
        "meltbench.models.onnx_build",
        job,
        f"onnxruntime-genai's model builder cannot build {arch} from {hf_dir}",
    )


def _child(job: dict[str, Any]) -> None:
    """Run the builder in this process (the child), with the compatibility shim."""
    # the package's __init__ puts the builder's folder on sys.path (its own imports need it)
    from onnxruntime_genai.models import builder

    original = builder.get_hf_details

    def get_hf_details(*args: Any, **kwargs: Any) -> Any:
        details = original(*args, **kwargs)
        for change in compat_config(details["hf_config"]):
            print(f"meltbench compatibility shim: {change}", flush=True)
        return details

    builder.get_hf_details = get_hf_details
    args = (
        None,
        job["hf_dir"],
        job["out_dir"],
        job["precision"],
        "cpu",
        str(Path(job["tmp_dir"]) / "cache"),
    )
    extra = builder.parse_extra_options(*args, [f"{k}={v}" for k, v in BUILDER_OPTIONS.items()])
    builder.create_model(*args, **extra)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], _child))
