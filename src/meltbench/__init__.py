"""meltbench: measure language models on the devices where they run.

The top-level package stays light: ``import meltbench`` loads no engine, no numpy and
no plotting library. The public API is resolved lazily on first attribute access::

    import meltbench
    result = meltbench.run(n_prompt=64, n_gen=16, reps=2)
    print(result.metrics["decode_tps"].median)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "run": "meltbench.api",
    "load_results": "meltbench.api",
    "RunResult": "meltbench.results.schema",
    "RunSpec": "meltbench.config",
    "ModelSpec": "meltbench.config",
    "EngineSpec": "meltbench.config",
    "WorkloadSpec": "meltbench.config",
    "SensorSpec": "meltbench.config",
    "ResultStore": "meltbench.results.store",
    "UsageError": "meltbench.errors",
    "RunFailed": "meltbench.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Import public names on first use (PEP 562), keeping ``import meltbench`` light."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'meltbench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
