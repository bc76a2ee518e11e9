"""The artifacts of a forward run, built once in a child process and cached.

Every engine of a forward task runs the same weights on the same inputs. This module
builds them with PyTorch, in a process of its own (``python -m meltbench.forward.build``,
fed one JSON request on stdin), so that building and exporting never count in the
measured worker's memory or time:

- the model with seeded random weights (``torch.manual_seed(seed)``; encoders:
  ``transformers.AutoModel.from_config``, saved with ``save_pretrained``; vision models:
  ``timm.create_model(name, pretrained=False)``, its ``state_dict`` saved as
  safetensors), or a local Hugging Face encoder folder as it is;
- the seeded inputs (:mod:`meltbench.forward.inputs`) and the reference outputs:
  PyTorch eager, float32, ``model.eval()`` under ``torch.inference_mode()``;
- what an engine loads besides the weights: ONNX (``torch.onnx.export(dynamo=True)``,
  PyTorch's official exporter), ExecuTorch ``.pte`` (``torch.export`` then
  ``to_edge_transform_and_lower`` with the XNNPACK partitioner) or LiteRT ``.tflite``
  (``litert_torch.convert``), each for the run's fixed input shapes.

Cache layout, under ``$XDG_CACHE_HOME/meltbench/forward/<model key>/`` (the key hashes
the task, model, weights, seed and the torch/transformers/timm versions)::

    model/                    weights (encoders: a save_pretrained folder)
    b8-s128/ or b1-r224/      per input shape: inputs.npz, reference.npz, model.onnx, ...
    b8-s128/manifest.json     written last: the shape's files are complete

A half-built entry (a killed build) has no manifest and is built again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "EXPORTS",
    "OUTPUT_NAMES",
    "artifact_paths",
    "build",
    "ensure_artifacts",
    "load_torch_model",
    "main",
]

OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "encode": ("last_hidden_state", "pooler_output"),
    "classify": ("logits",),
}
"""The outputs every engine returns, by task: the encoder's hidden states ``(batch,
seq_len, hidden)`` and pooled output ``(batch, hidden)``; the classifier's logits
``(batch, classes)``."""

EXPORTS: dict[str, str] = {
    "onnx": "model.onnx",
    "executorch": "model.pte",
    "litert": "model.tflite",
}
"""Export format -> file name in the shape's folder."""

BUILD_TIMEOUT_S = 1800.0
"""Longest a build may take: exporting XLM-RoBERTa-base to ONNX takes about a minute on
two cores, the ExecuTorch lowering of a vision model a few."""


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "timm"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _model_key(request: dict[str, Any]) -> str:
    ref = request["ref"]
    ident: dict[str, Any] = {
        "task": request["task"],
        "ref": ref,
        "weights": request["weights"],
        "seed": request["seed"],
        "versions": _versions(),
    }
    path = Path(ref)
    if path.exists():  # a local checkpoint: its place and age
        ident["ref"] = str(path.resolve())
        ident["mtime_ns"] = max(
            (p.stat().st_mtime_ns for p in [path, *path.glob("*")] if p.exists()), default=0
        )
    blob = json.dumps(ident, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def shape_tag(request: dict[str, Any]) -> str:
    """``b{batch}-s{seq_len}`` (encode) or ``b{batch}-r{resolution}`` (classify)."""
    if request["task"] == "encode":
        return f"b{request['batch_size']}-s{request['seq_len']}"
    return f"b{request['batch_size']}-r{request['resolution']}"


def artifact_paths(request: dict[str, Any], root: Path | None = None) -> dict[str, Path]:
    """Where a request's files are: ``model`` (the weights folder), ``shape`` (the
    shape's folder), ``inputs``, ``reference``, ``manifest`` and one per export format.

    Args:
        request: ``{"task", "ref", "weights", "seed", "batch_size", "seq_len",
            "resolution", "exports": [...]}`` (:func:`meltbench.forward.run.build_request`).
        root: the cache root (default ``$XDG_CACHE_HOME/meltbench/forward``).
    """
    if root is None:
        from meltbench.models.cache import cache_dir

        root = cache_dir() / "forward"
    base = Path(root) / _model_key(request)
    shape = base / shape_tag(request)
    out = {
        "model": base / "model",
        "shape": shape,
        "inputs": shape / "inputs.npz",
        "reference": shape / "reference.npz",
        "manifest": shape / "manifest.json",
    }
    for fmt, name in EXPORTS.items():
        out[fmt] = shape / name
    return out


# -- building (the child process; imports torch) ---------------------------------------


class _Outputs:
    """Wraps a model so that it returns a tuple of plain tensors (what exporters need)."""

    @staticmethod
    def wrap(model: Any, task: str) -> Any:
        import torch

        class Encoder(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                out = self.inner(input_ids=input_ids, attention_mask=attention_mask)
                return out.last_hidden_state, out.pooler_output

        class Classifier(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, pixel_values: Any) -> Any:
                return (self.inner(pixel_values),)

        return (Encoder if task == "encode" else Classifier)(model).eval()


def load_torch_model(task: str, model_dir: Path | str, ref: str) -> Any:
    """The PyTorch model of a built entry (or a local encoder folder), in eval mode,
    returning a tuple of output tensors in :data:`OUTPUT_NAMES` order.

    Args:
        task: ``encode`` or ``classify``.
        model_dir: the entry's ``model`` folder, or the local Hugging Face folder.
        ref: the model reference (a timm name for ``classify``).

    Raises:
        OSError, ValueError: the folder is missing or unreadable.
    """
    model_dir = Path(model_dir)
    if task == "encode":
        from transformers import AutoModel

        net = AutoModel.from_pretrained(model_dir, dtype="float32")
    else:
        import timm
        from safetensors.torch import load_file

        meta = json.loads((model_dir / "meta.json").read_text())
        net = timm.create_model(meta["timm_name"], pretrained=False)
        net.load_state_dict(load_file(model_dir / "model.safetensors"))
    return _Outputs.wrap(net, task)


def _build_weights(request: dict[str, Any], model_dir: Path) -> None:
    import torch

    from meltbench.forward.presets import ENCODER_PRESETS, VISION_PRESETS

    torch.manual_seed(int(request["seed"]))
    tmp = model_dir.with_name(f"model.tmp{os.getpid()}")
    if request["task"] == "encode":
        from transformers import AutoConfig, AutoModel

        preset = ENCODER_PRESETS.get(request["ref"])
        if preset is not None:
            cfg = preset.hf_config()
            config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        else:
            config = AutoConfig.from_pretrained(request["ref"])
        net = AutoModel.from_config(config, dtype=torch.float32)
        net.save_pretrained(tmp)
    else:
        import timm
        from safetensors.torch import save_file

        preset = VISION_PRESETS.get(request["ref"])
        name = preset.timm_name if preset else request["ref"]
        net = timm.create_model(name, pretrained=False)
        tmp.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_file(state, tmp / "model.safetensors")
        (tmp / "meta.json").write_text(json.dumps({"timm_name": name}))
    os.replace(tmp, model_dir)


def _inputs(request: dict[str, Any], model_dir: Path) -> dict[str, Any]:
    from meltbench.forward.inputs import encoder_inputs, image_inputs

    seed = int(request["seed"])
    if request["task"] == "encode":
        vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
        return encoder_inputs(request["batch_size"], request["seq_len"], int(vocab), seed)
    return image_inputs(request["batch_size"], request["resolution"], seed)


def _export(fmt: str, wrapped: Any, example: tuple[Any, ...], path: Path, names: Any) -> None:
    """Write ``wrapped`` to ``path`` in format ``fmt`` for the shapes of ``example``."""
    import torch

    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
    if fmt == "onnx":
        program = torch.onnx.export(
            wrapped,
            example,
            input_names=list(names[0]),
            output_names=list(names[1]),
            dynamo=True,
            external_data=False,
        )
        program.save(str(tmp))
    elif fmt == "executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower

        exported = torch.export.export(wrapped, example)
        program = to_edge_transform_and_lower(
            exported, partitioner=[XnnpackPartitioner()]
        ).to_executorch()
        tmp.write_bytes(program.buffer)
    elif fmt == "litert":
        import litert_torch

        litert_torch.convert(wrapped, example).export(str(tmp))
    else:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTS)}")
    os.replace(tmp, path)


def build(request: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """Build (or reuse) every file of ``request``; returns the manifest.

    The manifest: ``{"model_dir", "inputs", "reference", "exports": {fmt: path},
    "n_params", "build_s": {...}, "versions"}``; paths are strings.

    Raises:
        ImportError: torch, transformers or timm (or an exporter) is not installed.
        ValueError, OSError: a model that cannot be built or a folder that cannot be
            written.
    """
    import numpy as np
    import torch

    paths = artifact_paths(request, root)
    manifest_path = paths["manifest"]
    wanted = list(request.get("exports") or [])
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if all(fmt in manifest["exports"] for fmt in wanted):
            return manifest
    else:
        manifest = {"exports": {}, "build_s": {}}
    torch.set_num_threads(max(1, int(request.get("threads") or 1)))
    local = request["weights"] == "pretrained"
    model_dir = Path(request["ref"]) if local else paths["model"]
    timings = manifest["build_s"]
    if not local and not model_dir.exists():
        t = time.perf_counter()
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        _build_weights(request, model_dir)
        timings["weights"] = time.perf_counter() - t
    wrapped = load_torch_model(request["task"], model_dir, request["ref"])
    paths["shape"].mkdir(parents=True, exist_ok=True)
    inputs = _inputs(request, model_dir)
    names = (tuple(inputs), OUTPUT_NAMES[request["task"]])
    example = tuple(torch.from_numpy(inputs[n]) for n in names[0])
    if not paths["reference"].exists():
        t = time.perf_counter()
        with torch.inference_mode():
            outs = wrapped(*example)
        reference = {n: o.numpy() for n, o in zip(names[1], outs, strict=True)}
        np.savez(paths["inputs"], **inputs)
        np.savez(paths["reference"], **reference)
        timings["reference"] = time.perf_counter() - t
    for fmt in wanted:
        if fmt in manifest["exports"] and Path(manifest["exports"][fmt]).exists():
            continue
        t = time.perf_counter()
        _export(fmt, wrapped, example, paths[fmt], names)
        manifest["exports"][fmt] = str(paths[fmt])
        timings[f"export_{fmt}"] = time.perf_counter() - t
    manifest.update(
        model_dir=str(model_dir),
        inputs=str(paths["inputs"]),
        reference=str(paths["reference"]),
        n_params=sum(p.numel() for p in wrapped.parameters()),
        versions=_versions(),
    )
    tmp = manifest_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, manifest_path)
    return manifest


def ensure_artifacts(request: dict[str, Any], timeout_s: float = BUILD_TIMEOUT_S) -> dict[str, Any]:
    """The manifest of ``request``, building what is missing in a child process.

    Returns:
        the manifest of :func:`build`, plus ``"built": bool`` (False: all from cache).

    Raises:
        RuntimeError: the build failed (its last line of error output says why) or took
            longer than ``timeout_s``.
    """
    paths = artifact_paths(request)
    if paths["manifest"].exists():
        manifest = json.loads(paths["manifest"].read_text())
        if all(fmt in manifest["exports"] for fmt in request.get("exports") or []):
            return {**manifest, "built": False}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "meltbench.forward.build"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"building the model took longer than {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(f"building the model failed: {lines[-1] if lines else proc.returncode}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "built": True}


def main() -> int:
    """Child entry point: one JSON request on stdin, the manifest as the last stdout line."""
    request = json.loads(sys.stdin.read())
    manifest = build(request)
    sys.stdout.write(json.dumps(manifest) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
