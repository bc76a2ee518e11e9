"""A lazy registry of plug-ins named ``"module:Class"``.

Built-in engines are listed as import strings and imported only when asked for, so
``import meltbench`` never pulls in torch or llama.cpp (the pattern of
lm-evaluation-harness). Third-party packages add entries through the Python entry-point
group ``meltbench.engines`` in their ``pyproject.toml``::

    [project.entry-points."meltbench.engines"]
    myengine = "mypkg.engine:MyEngine"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from meltbench.errors import UsageError

__all__ = ["ENGINES", "SENSORS", "TARGETS", "Registry"]


@dataclass
class Registry:
    """Names to lazily imported classes.

    Attributes:
        kind: what is registered ("engine"), used in error messages.
        group: entry-point group scanned for third-party entries.
        builtins: name -> ``"module:Class"`` for the entries meltbench ships.
        aliases: alternative spellings -> canonical name.
        install_hints: name -> what to install when the import fails.
    """

    kind: str
    group: str
    builtins: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)
    install_hints: dict[str, str] = field(default_factory=dict)

    def _entries(self) -> dict[str, str]:
        entries = dict(self.builtins)
        for ep in entry_points(group=self.group):
            entries.setdefault(ep.name, ep.value)
        return entries

    def names(self) -> list[str]:
        """All registered names (built-in and entry points), sorted."""
        return sorted(self._entries())

    def ordered_names(self) -> list[str]:
        """Built-in names in their declared order, then entry-point names, sorted."""
        extra = sorted(set(self._entries()) - set(self.builtins))
        return [*self.builtins, *extra]

    def canonical(self, name: str) -> str:
        """The canonical spelling of ``name``.

        Raises:
            UsageError: if no entry of that name exists.
        """
        key = self.aliases.get(name.lower(), name)
        entries = self._entries()
        if key not in entries:
            choices = ", ".join(sorted(entries))
            raise UsageError(f"unknown {self.kind} {name!r}; choose one of: {choices}")
        return key

    def load(self, name: str) -> Any:
        """Import and return the class registered as ``name``.

        Raises:
            UsageError: if the name is unknown, or its library is not installed (the
                message says what to ``pip install``).
        """
        key = self.canonical(name)
        target = self._entries()[key]
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = self.install_hints.get(key, "install the package that provides it")
            raise UsageError(
                f"{self.kind} {key!r} is not available ({exc.name or exc} is not installed); {hint}"
            ) from exc
        return getattr(module, attr)


ENGINES = Registry(
    kind="engine",
    group="meltbench.engines",
    builtins={
        "llama.cpp": "meltbench.engines.llama_cpp:LlamaCppEngine",
        "transformers": "meltbench.engines.transformers:TransformersEngine",
        "onnxruntime": "meltbench.engines.onnxruntime_genai:OnnxRuntimeGenAIEngine",
        "mlx": "meltbench.engines.mlx:MlxEngine",
        "openai": "meltbench.engines.openai:OpenAIEngine",
        "mnn": "meltbench.engines.mnn_llm:MnnEngine",
        "executorch": "meltbench.engines.executorch_llm:ExecuTorchEngine",
    },
    aliases={
        "llama_cpp": "llama.cpp",
        "llamacpp": "llama.cpp",
        "llama-cpp": "llama.cpp",
        "torch": "transformers",
        "pytorch": "transformers",
        "ort": "onnxruntime",
        "onnxruntime-genai": "onnxruntime",
        "onnx": "onnxruntime",
        "mlx-lm": "mlx",
        "http": "openai",
        "mnn-llm": "mnn",
        "et": "executorch",
    },
    install_hints={
        "llama.cpp": "pip install 'meltbench[llama]'",
        "transformers": "pip install 'meltbench[torch]'",
        "onnxruntime": "pip install 'meltbench[onnx]'",
        "mlx": "pip install 'meltbench[mlx]'",
        "openai": "pip install 'meltbench[openai]'",
        "mnn": "pip install 'meltbench[mnn]'",
        "executorch": "pip install 'meltbench[executorch]'",
    },
)

#: Engines of the forward tasks (``--task encode|classify``; see
#: :mod:`meltbench.forward.engine`); third parties add entries through the
#: ``meltbench.forward_engines`` entry-point group.
FORWARD_ENGINES = Registry(
    kind="forward engine",
    group="meltbench.forward_engines",
    builtins={
        "torch": "meltbench.forward.engine:TorchForward",
        "torch.compile": "meltbench.forward.engine:TorchCompileForward",
        "onnxruntime": "meltbench.forward.engine:OnnxRuntimeForward",
        "mlx": "meltbench.forward.mlx_engine:MlxForward",
        "executorch": "meltbench.forward.mobile_engines:ExecuTorchForward",
        "litert": "meltbench.forward.mobile_engines:LiteRTForward",
    },
    aliases={
        "pytorch": "torch",
        "transformers": "torch",
        "eager": "torch",
        "compile": "torch.compile",
        "torch-compile": "torch.compile",
        "inductor": "torch.compile",
        "ort": "onnxruntime",
        "onnx": "onnxruntime",
        "mlx-embeddings": "mlx",
        "et": "executorch",
        "xnnpack": "executorch",
        "tflite": "litert",
        "ai-edge-litert": "litert",
    },
    install_hints={
        **{
            name: "pip install 'meltbench[encoders]'"
            for name in ("torch", "torch.compile", "onnxruntime", "mlx")
        },
        "executorch": "pip install 'meltbench[executorch]'",
        "litert": "pip install 'meltbench[litert]' (in an environment of its own)",
    },
)

#: Sensor plug-ins (see :mod:`meltbench.sensors.base`); third parties add entries through
#: the ``meltbench.sensors`` entry-point group. Listing order is probing order.
SENSORS = Registry(
    kind="sensor",
    group="meltbench.sensors",
    builtins={
        "rapl": "meltbench.sensors.rapl:RaplSensor",
        "nvml": "meltbench.sensors.nvml:NvmlSensor",
        "jetson": "meltbench.sensors.jetson:JetsonPowerSensor",
        "battery": "meltbench.sensors.battery:BatterySensor",
        "hwmon": "meltbench.sensors.hwmon:HwmonSensor",
        "thermal": "meltbench.sensors.thermal:ThermalZoneSensor",
        "cpufreq": "meltbench.sensors.cpufreq:CpuFreqSensor",
        "apple": "meltbench.sensors.apple:ApplePowerSensor",
    },
    install_hints={"nvml": "pip install 'meltbench[nvidia]'"},
)

#: Target transports by URL scheme (``local``, ``ssh://``, ``adb://``; see
#: :mod:`meltbench.targets.base`). Each class has ``from_spec(spec, connect)``; third
#: parties add schemes through the ``meltbench.targets`` entry-point group.
TARGETS = Registry(
    kind="target",
    group="meltbench.targets",
    builtins={
        "local": "meltbench.targets.local:LocalTarget",
        "ssh": "meltbench.targets.ssh:SshTarget",
        "adb": "meltbench.targets.adb:AdbTarget",
    },
    install_hints={
        "ssh": "pip install 'meltbench[remote]'",
        "adb": "pip install 'meltbench[remote]'",
    },
)
