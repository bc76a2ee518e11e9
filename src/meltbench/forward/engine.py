"""The engines of the forward tasks: one forward pass over a batch, NumPy in, NumPy out.

A forward engine loads what :mod:`meltbench.forward.build` made (the weights, or the
exported file of its format) and runs one pass per call. Each engine is timed the same
way by :mod:`meltbench.forward.measure`: from handing it the NumPy inputs to holding its
outputs as NumPy arrays on the host (so conversion to and from the engine's tensors
counts, as it does for an application).

Built in: ``torch`` (PyTorch eager), ``torch.compile`` (TorchInductor, compiled on the
first pass), ``onnxruntime`` (ONNX Runtime's CPU provider on the ``torch.onnx`` export)
and ``mlx`` (encoders, through mlx-embeddings: :mod:`meltbench.forward.mlx_engine`).
They are registered in :data:`meltbench.registry.FORWARD_ENGINES`.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

__all__ = ["ForwardEngine", "OnnxRuntimeForward", "TorchCompileForward", "TorchForward"]


class ForwardEngine(ABC):
    """One engine of the forward tasks.

    Class attributes:
        name: registered name.
        description: one line for ``meltbench engines``.
        tasks: the tasks it runs (``encode``, ``classify``).
        export: the format of :data:`meltbench.forward.build.EXPORTS` it loads, or None
            (it loads the weights).
        requirements: importable modules it needs.
        allowed_options: ``-o KEY=VALUE`` keys it takes.

    Args:
        threads: CPU threads for the pass (intra-op).
        options: engine-specific options (keys of :attr:`allowed_options`).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("encode", "classify")
    export: ClassVar[str | None] = None
    requirements: ClassVar[tuple[str, ...]] = ()
    allowed_options: ClassVar[frozenset[str]] = frozenset()
    install_hint: ClassVar[str] = "pip install 'meltbench[encoders]'"

    def __init__(self, threads: int, options: dict[str, Any] | None = None) -> None:
        self.threads = int(threads)
        self.options = dict(options or {})

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """Modules of :attr:`requirements` that cannot be imported here."""
        return [m for m in cls.requirements if importlib.util.find_spec(m) is None]

    @classmethod
    def check(cls, task: str, options: dict[str, Any]) -> str | None:
        """A one-line problem with running ``task`` with ``options``, or None."""
        if task not in cls.tasks:
            return f"engine {cls.name!r} runs --task {', '.join(cls.tasks)}, not {task}"
        unknown = sorted(set(options) - cls.allowed_options)
        if unknown:
            allowed = ", ".join(sorted(cls.allowed_options)) or "none"
            return f"engine {cls.name!r} has no option {', '.join(unknown)}; allowed: {allowed}"
        return None

    @abstractmethod
    def load(self, manifest: dict[str, Any], task: str, ref: str) -> None:
        """Load the model (timed as ``load_ms``).

        Args:
            manifest: :func:`meltbench.forward.build.build`'s manifest (``model_dir``,
                ``exports``).
            task: ``encode`` or ``classify``.
            ref: the model reference.
        """

    @abstractmethod
    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """One forward pass: name -> NumPy array in, output name -> NumPy array out
        (the names of :data:`meltbench.forward.build.OUTPUT_NAMES`)."""

    def info(self) -> dict[str, Any]:
        """The engine's facts: name, version of its library, threads, options."""
        return {"name": self.name, "version": self._version(), "threads": self.threads,
                "options": self.options, "device": "cpu"}  # fmt: skip

    def unload(self) -> None:  # noqa: B027 -- an engine with nothing to free keeps this
        """Free the model (engines drop what :meth:`load` made)."""

    def _version(self) -> str | None:
        package = {"torch": "torch", "torch.compile": "torch", "onnxruntime": "onnxruntime",
                   "mlx": "mlx", "executorch": "executorch",
                   "litert": "ai-edge-litert"}  # fmt: skip
        try:
            return version(package.get(self.name, self.name))
        except PackageNotFoundError:
            return None


class TorchForward(ForwardEngine):
    """PyTorch eager, float32, ``torch.inference_mode()``: the reference engine."""

    name = "torch"
    description = "PyTorch eager (float32): the reference every other engine is checked against"
    requirements = ("torch",)

    def load(self, manifest: dict[str, Any], task: str, ref: str) -> None:
        import torch

        from meltbench.forward.build import OUTPUT_NAMES, load_torch_model

        torch.set_num_threads(self.threads)
        self._torch = torch
        self._names = OUTPUT_NAMES[task]
        self._model = self._prepare(load_torch_model(task, manifest["model_dir"], ref))

    def _prepare(self, model: Any) -> Any:
        return model

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        torch = self._torch
        with torch.inference_mode():
            outs = self._model(*(torch.from_numpy(a) for a in inputs.values()))
        return {n: o.numpy() for n, o in zip(self._names, outs, strict=True)}

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["interop_threads"] = self._torch.get_num_interop_threads()
        return out

    def unload(self) -> None:
        self._model = None


class TorchCompileForward(TorchForward):
    """``torch.compile`` (TorchInductor by default): compiled on the first pass, which the
    cold pass records. Options: ``mode`` (``default``, ``reduce-overhead``,
    ``max-autotune``), ``backend`` (``inductor``, ``aot_eager``...), ``dynamic``."""

    name = "torch.compile"
    description = "torch.compile (TorchInductor): compiled on the first (cold) pass"
    allowed_options = frozenset({"mode", "backend", "dynamic"})

    def _prepare(self, model: Any) -> Any:
        kwargs = {k: self.options[k] for k in ("mode", "backend", "dynamic") if k in self.options}
        return self._torch.compile(model, **kwargs)

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["backend"] = self.options.get("backend", "inductor")
        out["mode"] = self.options.get("mode", "default")
        return out


class OnnxRuntimeForward(ForwardEngine):
    """ONNX Runtime, CPU execution provider, on the ``torch.onnx.export(dynamo=True)``
    graph; ``intra_op_num_threads`` = threads, one inter-op thread, every graph
    optimization (``ORT_ENABLE_ALL``). Option: ``optimization`` (``disable``,
    ``basic``, ``extended``, ``all``)."""

    name = "onnxruntime"
    description = "ONNX Runtime (CPU provider) on the torch.onnx export"
    export = "onnx"
    requirements = ("onnxruntime",)
    allowed_options = frozenset({"optimization"})

    def load(self, manifest: dict[str, Any], task: str, ref: str) -> None:
        import onnxruntime as ort

        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}  # fmt: skip
        level = str(self.options.get("optimization", "all"))
        if level not in levels:
            raise ValueError(f"optimization must be one of {', '.join(levels)} (got {level!r})")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = levels[level]
        self._session = ort.InferenceSession(
            manifest["exports"]["onnx"], so, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        values = self._session.run(self._outputs, inputs)
        return dict(zip(self._outputs, values, strict=True))

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["providers"] = self._session.get_providers()
        return out

    def unload(self) -> None:
        self._session = None
