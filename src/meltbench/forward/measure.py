"""The worker side of a forward run: build or reuse the artifacts, load, time each pass.

Called by :mod:`meltbench.harness.worker` for a job whose workload task is ``encode`` or
``classify``. Events, after ``environment``::

    {"event": "phase", "phase": "prepare"}
    {"event": "prepared", "data": {"prepare_ns", "built", "build_s", "n_params", ...}}
    {"event": "phase", "phase": "load"}
    {"event": "loaded", "load_ns", "t_load_start_ns", "t_load_end_ns", "engine": {...}}
    {"event": "forward", "data": {"inputs": {...}, "output_check": {...}}}
    {"event": "rep", "index", "kind", "t_start_ns", "t_end_ns", "token_ns": [],
     "tokens": [], "cooldown"}    one per pass, warmup first; pass 0 is the cold one

and the worker's ``done`` with the peak memory.

A pass is timed from handing the engine its NumPy inputs to holding its NumPy outputs
(``time.perf_counter_ns``), with Python's garbage collector paused, as the generation
worker does. The outputs of the first pass are compared with the PyTorch reference
(:func:`meltbench.forward.outputs.compare_outputs`) after it was timed. The build runs in
a child process (:func:`meltbench.forward.build.ensure_artifacts`), so PyTorch's memory
for building and exporting is not the measured worker's.
"""

from __future__ import annotations

import gc
import time
from typing import Any

__all__ = ["measure_forward"]


def measure_forward(job: dict[str, Any], emit: Any, cooldown: Any = None) -> None:
    """Measure the forward job ``job``, reporting through ``emit(event, **fields)``.

    Args:
        job: the worker's job; ``job["forward"]`` is the build request of
            :func:`meltbench.forward.run.build_request`, ``job["workload"]`` gives
            ``warmup`` and ``reps``, ``job["settings"]`` ``threads`` and ``options``.
        emit: the worker's event writer.
        cooldown: ``wait() -> record`` between passes, or None.

    Raises:
        RuntimeError: the build failed; whatever the engine raises on load or run.
    """
    import numpy as np

    from meltbench.forward.build import ensure_artifacts
    from meltbench.forward.inputs import describe_inputs
    from meltbench.forward.outputs import compare_outputs
    from meltbench.registry import FORWARD_ENGINES

    request = job["forward"]
    settings = job["settings"]
    engine = FORWARD_ENGINES.load(job["engine"])(settings["threads"], settings.get("options"))

    emit("phase", phase="prepare")
    t = time.perf_counter_ns()
    manifest = ensure_artifacts(request)
    prepare_ns = time.perf_counter_ns() - t
    emit("prepared", data={"prepare_ns": prepare_ns, **_public(manifest)})
    with np.load(manifest["inputs"]) as npz:
        inputs = {name: np.ascontiguousarray(npz[name]) for name in npz.files}
    with np.load(manifest["reference"]) as npz:
        reference = {name: npz[name] for name in npz.files}

    emit("phase", phase="load")
    t0 = time.perf_counter_ns()
    engine.load(manifest, request["task"], request["ref"])
    t1 = time.perf_counter_ns()
    emit("loaded", load_ns=t1 - t0, t_load_start_ns=t0, t_load_end_ns=t1, engine=engine.info())

    workload = job["workload"]
    clock = time.perf_counter_ns
    for index in range(workload["warmup"] + workload["reps"]):
        waited = cooldown() if (cooldown is not None and index > 0) else None
        gc.collect()
        gc.disable()
        try:
            t_start = clock()
            outputs = engine.run(inputs)
            t_end = clock()
        finally:
            gc.enable()
        if index == 0:
            check = compare_outputs(reference, outputs)
            emit("forward", data={"inputs": describe_inputs(inputs),
                                  "output_check": check.to_dict()})  # fmt: skip
        kind = "warmup" if index < workload["warmup"] else "timed"
        emit("rep", index=index, kind=kind, t_start_ns=t_start, t_end_ns=t_end,
             token_ns=[], tokens=[], cooldown=waited)  # fmt: skip
        del outputs
    engine.unload()


def _public(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a result keeps of the manifest: sizes, timings and versions, not the inputs."""
    keep = ("built", "build_s", "n_params", "versions", "model_dir", "exports")
    return {k: manifest.get(k) for k in keep}
