"""The on-device runtimes of the forward tasks: ExecuTorch (XNNPACK) and LiteRT.

Both run a file exported from the same PyTorch model the reference was computed with
(:func:`meltbench.forward.build.build`: ``torch.export`` then ExecuTorch's
``to_edge_transform_and_lower`` with the XNNPACK partitioner; ``litert_torch.convert``),
so the per-run output check compares one set of weights in two runtimes.

- **ExecuTorch**: ``executorch.runtime.Runtime.get().load_program(path)``, method
  ``forward``, inputs as CPU tensors; XNNPACK's thread pool set to ``threads`` with
  ``_unsafe_reset_threadpool`` (ExecuTorch's Python bindings; its runners call the same
  pool, https://pytorch.org/executorch/stable/). Install: ``pip install
  'meltbench[executorch]'``.
- **LiteRT**: ``ai_edge_litert.interpreter.Interpreter(model_path, num_threads)`` and its
  default signature runner (XNNPACK is LiteRT's default CPU delegate). The converter
  exports integer inputs as int32 where the model has int64 (``litert_torch`` narrows
  them), so ids and masks are cast to the input's declared dtype before the pass, inside
  the timing. Install: ``pip install 'meltbench[litert]'`` -- in its own environment:
  ``litert-torch`` 0.10 pins pydantic 2.11 and typing-extensions 4.12, below what
  meltbench's other extras need (``openai`` wants typing-extensions >= 4.14).
"""

from __future__ import annotations

from typing import Any

from meltbench.forward.engine import ForwardEngine

__all__ = ["ExecuTorchForward", "LiteRTForward"]


class ExecuTorchForward(ForwardEngine):
    """ExecuTorch with the XNNPACK delegate, float32, on the ``.pte`` export."""

    name = "executorch"
    description = "ExecuTorch (XNNPACK delegate) on the torch.export program"
    export = "executorch"
    requirements = ("executorch",)
    install_hint = "pip install 'meltbench[executorch]'"

    def load(self, manifest: dict[str, Any], task: str, ref: str) -> None:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        from meltbench.forward.build import OUTPUT_NAMES

        portable_lib._unsafe_reset_threadpool(self.threads)
        self._pool = portable_lib._threadpool_get_thread_count()
        self._torch = torch
        self._names = OUTPUT_NAMES[task]
        program = Runtime.get().load_program(manifest["exports"]["executorch"])
        self._method = program.load_method("forward")

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        outs = self._method.execute([self._torch.from_numpy(a) for a in inputs.values()])
        return {n: o.numpy() for n, o in zip(self._names, outs, strict=True)}

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["n_threads"] = self._pool  # XNNPACK's thread pool as ExecuTorch reports it
        out["delegate"] = "xnnpack"
        return out

    def unload(self) -> None:
        self._method = None


class LiteRTForward(ForwardEngine):
    """LiteRT (the TensorFlow Lite runtime) on the ``litert_torch`` export, float32."""

    name = "litert"
    description = "LiteRT (ai-edge-litert, XNNPACK) on the litert-torch export"
    export = "litert"
    requirements = ("ai_edge_litert",)
    install_hint = "pip install 'meltbench[litert]' (in an environment of its own)"

    def load(self, manifest: dict[str, Any], task: str, ref: str) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from meltbench.forward.build import OUTPUT_NAMES

        self._interpreter = Interpreter(
            model_path=manifest["exports"]["litert"], num_threads=self.threads
        )
        self._runner = self._interpreter.get_signature_runner()
        details = self._runner.get_input_details()
        self._in_names = list(details)  # the converter's names (args_0, ...), in order
        self._in_dtypes = [details[n]["dtype"] for n in self._in_names]
        self._out_names = list(self._runner.get_output_details())
        self._names = OUTPUT_NAMES[task]

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        feed = {
            name: array.astype(dtype, copy=False)
            for name, dtype, array in zip(self._in_names, self._in_dtypes, inputs.values(),
                                          strict=True)
        }  # fmt: skip
        outs = self._runner(**feed)
        return {n: outs[o] for n, o in zip(self._names, self._out_names, strict=True)}

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["inputs"] = {n: str(d) for n, d in zip(self._in_names, self._in_dtypes, strict=True)}
        return out

    def unload(self) -> None:
        self._runner = self._interpreter = None
