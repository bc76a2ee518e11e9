"""MNN-LLM, Alibaba's on-device LLM runtime (``pip install 'meltbench[mnn]'``).

Models are MNN-LLM folders (``config.json``, ``llm_config.json``, ``llm.mnn``,
``llm.mnn.weight``, ``tokenizer.mtok``), as MNN's exporter writes them; the default
alias is exported once from its Hugging Face folder and cached
(:mod:`meltbench.models.mnn_build`).

The loop uses MNN's step API of ``MNN.llm`` (mnn 3.6): ``Llm.forward(ids)`` runs the ids
through the model after what the KV cache holds and returns the logits of the last
position (an MNN ``Var`` of shape ``[1, 1, vocab]``); greedy decoding takes its argmax
(read with ``Var.read()``) and feeds it back, one call per token. The first call is the
prefill. It is the same computation as MNN's own ``generate(ids, n)`` (the same tokens
were checked on this machine for int4 and int8), which has no per-token callback.
``reset()`` (``Llm.reset``) clears the KV cache and the history.

Settings: ``thread_num`` = ``--threads``; every other runtime setting (``precision``
``low``, ``memory`` ``low``, ``backend_type`` ``cpu``) is the exported ``config.json``'s,
i.e. MNN's defaults, unless ``-o KEY=VALUE`` overrides it (``precision``, ``memory``,
``backend_type``, ``max_all_tokens``: passed to ``Llm.set_config`` before loading).

No engine counters: MNN's context timers (``prefill_us``, ``decode_us``) are kept by
``generate()`` only and stay 0 through ``forward()`` (checked here); the engine records
that in ``info()``. ``benchmarks/engines.py`` compares the step loop's rates with
``generate()``'s own timers on the same model.

Two hazards of the Python bindings, found here and avoided: ``get_context()`` crashes
when its partial UTF-8 ``generate_str`` holds half a character (it is cleared first), and
the interpreter can crash at exit while logits ``Var`` objects are alive (the engine keeps
none: each is read into NumPy and dropped).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from meltbench.engines.base import EngineSettings, ModelHandle
from meltbench.engines.greedy_steps import GreedyStepEngine
from meltbench.errors import UsageError
from meltbench.models.build_record import check_dtype, read_build_record

__all__ = ["MnnEngine"]

_RUNTIME_OPTIONS = ("precision", "memory", "backend_type", "max_all_tokens")


class MnnEngine(GreedyStepEngine):
    """MNN-LLM through its Python bindings (``MNN.llm``), greedy, one token per step."""

    name = "mnn"
    description = "MNN-LLM (Alibaba): MNN folders from llmexport (int4, int8), CPU"
    requires = ("MNN",)
    install_hint = "pip install 'meltbench[mnn]'"
    model_formats = ("mnn",)
    dtypes = frozenset({"int4", "int8"})
    allowed_options = frozenset(_RUNTIME_OPTIONS)

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._llm: Any = None
        self._np: Any = None
        self._path: Path | None = None
        self._meta: dict[str, Any] = {}
        self._config: dict[str, Any] = {}
        self._n_vocab = 0

    def load(self, model: ModelHandle) -> None:
        """Create the MNN-LLM from ``config.json`` with the thread count and options set,
        load it, and read the vocabulary size from one step's logits.

        Raises:
            UsageError: not an MNN-LLM folder, or ``--dtype`` different from the
                precision the folder was exported with (``meltbench.json``).
        """
        import importlib

        import numpy as np

        # the Python package MNN.llm (its Llm wrapper); ``from MNN import llm`` gives the
        # C module of the same name, whose set_config takes a JSON string
        llm = importlib.import_module("MNN.llm")

        path = Path(model.path or "")
        try:
            self._config = json.loads((path / "config.json").read_text())
            json.loads((path / "llm_config.json").read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"not an MNN-LLM folder: {path} (config.json / llm_config.json: {exc}); "
                "export one with: meltbench convert MODEL --to mnn"
            ) from exc
        self._meta = read_build_record(path)
        s = self.settings
        check_dtype(s.dtype, self._meta, path, "mnn")
        self._np, self._path = np, path
        handle = llm.create(str(path / "config.json"))
        overrides: dict[str, Any] = {"thread_num": int(s.threads), "sampler_type": "greedy"}
        overrides.update({k: v for k, v in s.options.items() if k in _RUNTIME_OPTIONS})
        handle.set_config(overrides)
        handle.load()
        self._llm = handle
        self._overrides = overrides
        self.reset()
        self._n_vocab = int(self._logits([int(self.bos_token() or 0)]).shape[-1])
        self.reset()

    def _logits(self, ids: Sequence[int]) -> Any:
        var = self._llm.forward([int(t) for t in ids])
        return self._np.asarray(var.read()).reshape(-1)

    @property
    def n_vocab(self) -> int:
        """Vocabulary size: the length of the logits."""
        return self._n_vocab

    def bos_token(self) -> int | None:
        """``bos_token_id`` of the source model (``meltbench.json``), else None."""
        bos = self._meta.get("bos_token_id")
        return int(bos) if isinstance(bos, int) else None

    def info(self) -> dict[str, Any]:
        """Engine facts: versions, threads, MNN's runtime settings, precision."""
        try:
            mnn_version = version("mnn")
        except PackageNotFoundError:
            mnn_version = None
        settings = {k: self._config.get(k) for k in ("backend_type", "precision", "memory")}
        settings.update({k: v for k, v in self._overrides.items() if k != "sampler_type"})
        return {
            "name": self.name,
            "library": "MNN",
            "version": mnn_version,
            "device": "cpu"
            if settings.get("backend_type") in (None, "cpu")
            else settings["backend_type"],
            "dtype": self._meta.get("precision"),
            "precision": self._meta.get("precision"),
            "quant_block": self._meta.get("quant_block"),
            "built_by": "meltbench" if self._meta else None,
            "source": self._meta.get("source"),
            "model_path": str(self._path),
            "n_threads": self.settings.threads,
            "runtime_settings": settings,
            "loop": "Llm.forward step API, greedy argmax on the host (NumPy)",
            "counters": "none: MNN's prefill_us/decode_us count generate() only",
            "eos": "ignored (the step loop never stops early)",
        }

    def reset(self) -> None:
        """Clear the KV cache and history (``Llm.reset``)."""
        self._llm.reset()

    def unload(self) -> None:
        """Release the model."""
        self._llm = None
