"""ExecuTorch, Meta's on-device runtime, for LLMs (``pip install 'meltbench[executorch]'``).

Models are ExecuTorch programs (``.pte``) of a decoder with its KV cache inside, as
optimum-executorch exports them (``optimum-cli export executorch --recipe xnnpack``): one
method ``forward(tokens [1, n] int64, input_pos [n] int64) -> logits`` plus constant
methods with the export's metadata (``get_max_seq_len``, ``enable_dynamic_shape``,
``use_kv_cache``, ``get_vocab_size``, ...). The default alias is exported once from its
Hugging Face folder and cached (:mod:`meltbench.models.pte_build`).

The loop drives the program through ExecuTorch's Python runtime
(``executorch.runtime.Runtime.get().load_program(path).load_method("forward")``), as
ExecuTorch's own LLM runner (``extension/llm/runner``: ``TextPrefiller`` then
``TextTokenGenerator``) does in C++: the prompt in one call when the program has a dynamic
sequence length (in chunks of the largest length its input tensor takes), else token by
token; then one
call per generated token at the next position, the next token being the argmax of the last
position's logits. End of sequence is ignored (exactly ``n_gen`` tokens). The KV cache
lives in the program's mutable buffers; :meth:`reset` only moves the position back to 0
(the runner does the same: the causal mask makes entries past the position invisible, and
they are overwritten).

Threads: XNNPACK's pool is ExecuTorch's process-wide thread pool, set to ``--threads`` with
``_unsafe_reset_threadpool`` (the pybindings' call; the runner's ``--cpu_threads``).
The custom kernels optimum-executorch's ``custom_sdpa`` / ``custom_kv_cache`` exports use
are registered by importing ``executorch.extension.llm.custom_ops.custom_ops``.

No engine counters: ExecuTorch's ``Stats`` (prefill/decode rates) are kept by its
``TextLLMRunner``, which takes text, not token ids; ``benchmarks/engines.py`` compares
this loop with that runner's own figures on the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from meltbench.engines.base import EngineSettings, ModelHandle
from meltbench.engines.greedy_steps import GreedyStepEngine
from meltbench.errors import UsageError
from meltbench.models.build_record import check_dtype, read_build_record

__all__ = ["ExecuTorchEngine"]


class ExecuTorchEngine(GreedyStepEngine):
    """ExecuTorch (XNNPACK delegate) on a ``.pte`` LLM program, greedy, token ids in."""

    name = "executorch"
    description = "ExecuTorch (Meta): .pte programs from optimum-executorch (XNNPACK), CPU"
    requires = ("executorch",)
    install_hint = "pip install 'meltbench[executorch]'"
    model_formats = ("pte",)
    dtypes = frozenset({"float32", "8da4w"})

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._torch: Any = None
        self._method: Any = None
        self._meta: dict[str, Any] = {}
        self._built: dict[str, Any] = {}
        self._path: Path | None = None
        self._pos = 0
        self._chunk = 1
        self._n_vocab = 0

    def load(self, model: ModelHandle) -> None:
        """Load the program, read its metadata methods, set the thread pool.

        Raises:
            UsageError: the context is longer than the program's ``get_max_seq_len``, or
                ``--dtype`` differs from the precision it was exported with.
            RuntimeError: ExecuTorch cannot load the program.
        """
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        try:  # kernels of custom_sdpa / custom_kv_cache exports
            import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
        except ImportError:
            pass
        path = Path(model.path or "")
        self._built = read_build_record(path)
        s = self.settings
        check_dtype(s.dtype, self._built, path, "pte")
        portable_lib._unsafe_reset_threadpool(int(s.threads))
        self._pool = int(portable_lib._threadpool_get_thread_count())
        program = Runtime.get().load_program(str(path))
        for name in program.method_names:
            if name != "forward":
                value = program.load_method(name).execute([])[0]
                self._meta[name] = value.item() if hasattr(value, "item") else value
        self._method = program.load_method("forward")
        max_seq = int(self._meta.get("get_max_seq_len") or 0)
        if max_seq and s.n_ctx > max_seq:
            raise UsageError(
                f"context {s.n_ctx} is longer than the program's max_seq_len {max_seq}; lower "
                "--ctx or the workload, or export with a longer --max-seq-len"
            )
        # the input's sizes in the program: the upper bound of a bounded-dynamic sequence
        # dimension, or the static shape ((1, 1) for optimum-executorch's Gemma 3 export,
        # whose enable_dynamic_shape metadata says True: checked here, a (1, 3) input fails
        # with "Attempted to resize a static tensor")
        self._chunk = max(1, int(list(self._method.metadata.input_tensor_meta(0).sizes())[-1]))
        self._torch, self._path = torch, path
        self.reset()
        vocab = self._meta.get("get_vocab_size")
        self._n_vocab = int(vocab) if vocab else int(self._logits([0]).shape[-1])
        self.reset()

    def _logits(self, tokens: Sequence[int]) -> Any:
        """Run ``tokens`` at the current position; the last position's logits."""
        torch = self._torch
        out = None
        for start in range(0, len(tokens), self._chunk):
            part = [int(t) for t in tokens[start : start + self._chunk]]
            pos = torch.arange(self._pos, self._pos + len(part), dtype=torch.long)
            out = self._method.execute([torch.tensor([part], dtype=torch.long), pos])[0]
            self._pos += len(part)
        return out.reshape(-1, out.shape[-1])[-1]

    @property
    def n_vocab(self) -> int:
        """Vocabulary size: ``get_vocab_size``, else the logits' length."""
        return self._n_vocab

    def bos_token(self) -> int | None:
        """``get_bos_id`` of the program's metadata, else the source model's BOS
        (the sidecar JSON meltbench writes), else None."""
        bos = self._meta.get("get_bos_id", self._built.get("bos_token_id"))
        return int(bos) if isinstance(bos, int) else None

    def info(self) -> dict[str, Any]:
        """Engine facts: versions, threads, the program's metadata, precision."""
        try:
            et_version = version("executorch")
        except PackageNotFoundError:
            et_version = None
        return {
            "name": self.name,
            "library": "executorch",
            "version": et_version,
            "device": "cpu",
            "dtype": self._built.get("precision"),
            "precision": self._built.get("precision"),
            "recipe": self._built.get("recipe"),
            "built_by": "meltbench" if self._built else None,
            "source": self._built.get("source"),
            "model_path": str(self._path),
            "n_threads": self._pool,
            "program_metadata": {k: v for k, v in self._meta.items() if not callable(v)},
            "prefill_chunk": self._chunk,
            "counters": "none: ExecuTorch's Stats are kept by its text-in TextLLMRunner",
            "eos": "ignored (the loop never stops early)",
        }

    def reset(self) -> None:
        """Start at position 0 (the cache entries past it are masked, then overwritten)."""
        self._pos = 0

    def unload(self) -> None:
        """Release the method (and with it the program's buffers)."""
        self._method = None
