"""The host side of a forward run: the spec's defaults, its checks, and the build request.

:func:`forward_defaults` fills what ``--task encode|classify`` implies (the default model
and engine, random weights for a preset, the preset's resolution); :func:`prepare_forward`
checks a forward spec before anything runs and returns what the worker needs. Bad input
is a :class:`~meltbench.errors.UsageError` with one line that says how to fix it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.forward.presets import (
    DEFAULT_MODELS,
    ENCODER_PRESETS,
    VISION_PRESETS,
    max_seq_len,
    task_of,
)

__all__ = ["FORWARD_DEFAULT_ENGINE", "build_request", "forward_defaults", "prepare_forward"]

FORWARD_DEFAULT_ENGINE = "torch"
"""The engine of a forward task when ``--engine`` is not given."""

_EXPORT_NEEDS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxscript"),
    "executorch": ("executorch",),
    "litert": ("litert_torch",),
}


def forward_defaults(nested: dict[str, dict[str, Any]]) -> None:
    """Fill, in place, the settings a forward task implies, in :func:`meltbench.api.build_spec`'s
    nested form (``{"model": {...}, "engine": {...}, "workload": {...}}``).

    - a preset ``--model`` without ``--task`` sets the task (``bert-base`` -> encode);
    - ``--task encode|classify`` without ``--model`` runs its default model
      (:data:`~meltbench.forward.presets.DEFAULT_MODELS`), without ``--engine`` on
      :data:`FORWARD_DEFAULT_ENGINE`;
    - a preset and every vision model have random weights unless ``--weights`` says
      otherwise (which a vision model refuses: timm builds it untrained); a vision preset
      runs at its own resolution unless ``--resolution`` is given.
    """
    model = nested.setdefault("model", {})
    workload = nested.setdefault("workload", {})
    ref = model.get("ref")
    if "task" not in workload and ref is not None and task_of(ref) is not None:
        workload["task"] = task_of(ref)
    task = workload.get("task", "generate")
    if task == "generate":
        return
    if ref is None:
        ref = model["ref"] = DEFAULT_MODELS[task]
    nested.setdefault("engine", {}).setdefault("name", FORWARD_DEFAULT_ENGINE)
    if ref in ENCODER_PRESETS or task == "classify":  # vision models: timm, random weights
        model.setdefault("weights", "random")
    if task == "classify" and ref in VISION_PRESETS:
        workload.setdefault("resolution", VISION_PRESETS[ref].resolution)


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _encoder_config(ref: str, weights: str) -> tuple[dict[str, Any], Path | None]:
    """The config of an encoder reference and its local path (None for a preset)."""
    if ref in ENCODER_PRESETS:
        if weights == "pretrained":
            raise UsageError(
                f"{ref!r} is an architecture preset without weights; use --weights random "
                "or give a local Hugging Face folder"
            )
        return ENCODER_PRESETS[ref].hf_config(), None
    path = Path(ref)
    config = path / "config.json" if path.is_dir() else path
    if not config.is_file():
        presets = ", ".join(ENCODER_PRESETS)
        raise UsageError(
            f"--model {ref!r}: not an encoder preset ({presets}) nor a folder or config.json"
        )
    if path.is_dir() is False and weights == "pretrained":
        raise UsageError(f"--model {ref}: a config.json has no weights; add --weights random")
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model {ref}: cannot read {config} ({exc})") from None
    if "model_type" not in data or "vocab_size" not in data:
        raise UsageError(f"--model {ref}: {config} has no model_type or vocab_size")
    return data, path


def _vision_model(ref: str, weights: str) -> None:
    """Refuse what the vision path cannot build: weights, a name timm does not know."""
    if weights == "pretrained":
        raise UsageError(
            f"--model {ref}: vision models are built from timm with random weights; "
            "use --weights random"
        )
    if ref in VISION_PRESETS:
        return
    if importlib.util.find_spec("timm") is None:
        raise UsageError(
            f"--model {ref!r} is no vision preset ({', '.join(VISION_PRESETS)}); "
            "install timm to use its other models: pip install 'meltbench[encoders]'"
        )
    import timm

    if not timm.is_model(ref):
        raise UsageError(
            f"--model {ref!r} is neither a vision preset ({', '.join(VISION_PRESETS)}) nor "
            "a timm model name (see timm.list_models())"
        )


def prepare_forward(spec: Any, engine_cls: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a forward spec; return the model facts and the build request.

    Args:
        spec: the :class:`~meltbench.config.RunSpec` (``workload.task`` encode/classify).
        engine_cls: its :class:`~meltbench.forward.engine.ForwardEngine` class.

    Returns:
        ``(model_info, request)``: the model facts (name, task, architecture, local
        path) and :func:`build_request`'s dict.

    Raises:
        UsageError: an engine that does not run the task, a missing library, an unknown
            model or option, a sequence longer than the encoder's positions, a classify
            run without a resolution, a dtype or device other than float32 on the CPU,
            ``--profile``, or a target other than local.
    """
    w = spec.workload
    task, ref, weights = w.task, spec.model.ref, spec.model.weights
    if spec.target != "local":
        raise UsageError(
            f"--task {task} runs on the local target for now (got --target {spec.target})"
        )
    if spec.profile:
        raise UsageError(f"--task {task} has no profiler; drop --profile")
    if spec.engine.dtype not in (None, "float32"):
        raise UsageError(f"--task {task} runs float32 only for now; drop --dtype")
    if spec.engine.device not in (None, "cpu"):
        raise UsageError(f"--task {task} runs on the CPU only for now; drop --device")
    problem = engine_cls.check(task, spec.engine.options)
    if problem:
        raise UsageError(problem)
    preset_task = task_of(ref)
    if preset_task is not None and preset_task != task:
        raise UsageError(f"--model {ref} is a model for --task {preset_task}, not {task}")
    info: dict[str, Any] = {"name": ref, "task": task, "architecture": None, "path": None}
    if task == "encode":
        config, path = _encoder_config(ref, weights)
        info["architecture"] = config.get("model_type")
        info["path"] = str(path) if path else None
        limit = max_seq_len(config)
        if w.seq_len > limit:
            raise UsageError(
                f"--seq-len {w.seq_len} is longer than {ref}'s {limit} positions; use at "
                f"most {limit}"
            )
    else:
        _vision_model(ref, weights)
        preset = VISION_PRESETS.get(ref)
        info["architecture"] = preset.timm_name if preset else ref
        if w.resolution is None:
            raise UsageError(f"--model {ref} is no preset: give its input size with --resolution")
    builder = ("torch", "transformers") if task == "encode" else ("torch", "timm", "torchvision")
    needs = [*builder, *_EXPORT_NEEDS.get(engine_cls.export or "", ())]
    missing = _missing(tuple(needs)) + engine_cls.missing_requirements()
    if missing:
        raise UsageError(
            f"engine {engine_cls.name!r} on --task {task} needs "
            f"{', '.join(dict.fromkeys(missing))}, which is not installed; "
            f"{engine_cls.install_hint}"
        )
    return info, build_request(spec, engine_cls)


def build_request(spec: Any, engine_cls: Any) -> dict[str, Any]:
    """The build request of :mod:`meltbench.forward.build` for a forward spec:
    ``{"task", "ref", "weights", "seed", "batch_size", "seq_len", "resolution",
    "exports", "threads"}`` (``seq_len`` None for classify, ``resolution`` None for
    encode, so that one cache entry serves every run of the same shape)."""
    w = spec.workload
    encode = w.task == "encode"
    return {
        "task": w.task,
        "ref": spec.model.ref,
        "weights": spec.model.weights,
        "seed": w.seed,
        "batch_size": w.batch_size,
        "seq_len": w.seq_len if encode else None,
        "resolution": None if encode else w.resolution,
        "exports": [engine_cls.export] if engine_cls.export else [],
        "threads": spec.engine.threads,
    }
