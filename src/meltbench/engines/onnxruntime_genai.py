"""ONNX Runtime GenAI (``pip install 'meltbench[onnx]'``): ONNX models built by
onnxruntime-genai's model builder, run on ONNX Runtime's CPU execution provider.

A model is an ONNX Runtime GenAI folder (``genai_config.json``, ``model.onnx``, its
external data). The default alias's GGUF is converted to one (GGUF -> Hugging Face
folder -> ONNX, :mod:`meltbench.models.convert`, cached; ``--dtype`` picks the builder
precision, ``int4`` by default); a plain Hugging Face folder is refused with a hint to
run ``meltbench convert MODEL --to onnx`` once, because building inside ``load`` would
be counted as load time and repeated on every run.

How a request runs (the 0.18 Python API): ``og.Config(folder)`` with the session options
overlaid (``intra_op_num_threads`` = ``--threads``, ``inter_op_num_threads`` = 1) and the
providers cleared (CPU, ONNX Runtime's default) or set to CUDA; ``og.Model(config)``;
per request a new ``og.Generator`` with ``max_length`` = ``n_ctx`` (at least the model's
sliding-window size, which GenAI requires of the KV cache) and greedy search.
``append_tokens(prompt)`` runs the prompt through the model (prefill, one
``model_run``); each ``generate_next_token()`` first runs the model on the previous token
(from the second token on: one ``model_run`` each) and then takes the argmax of the last
logits; the token is read with ``get_next_tokens()[0]`` and yielded at once.

End of sequence: the model's ``eos_token_id`` is overlaid with an empty list, so GenAI
never marks the sequence done at an EOS token and every token is the plain argmax, EOS
included (llama-bench's behaviour); ``min_length`` = ``max_length`` is set as well, so a
GenAI version that ignores the empty list masks EOS instead of stopping. The generator
can only end at ``max_length``, which the run's context size always leaves room for.

The engine has no counters of its own (GenAI keeps no per-request timings), so
``counters()`` is None. ``profile()`` releases the measuring session, runs one request
on a new session with ONNX Runtime's profiler on, and reads its Chrome-trace JSON.
"""

from __future__ import annotations

import gc
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from meltbench.engines.base import Engine, EngineSettings, ModelHandle
from meltbench.errors import UsageError
from meltbench.models.build_record import check_dtype, read_build_record

__all__ = ["OnnxRuntimeGenAIEngine", "summarize_trace"]

_PROVIDERS = {"cpu": None, "cuda": "cuda"}
_TOP_OPS = 20


def summarize_trace(events: list[dict[str, Any]], n_runs: int | None = None) -> dict[str, Any]:
    """Per-category and per-operator time from an ONNX Runtime profile (Chrome trace).

    Args:
        events: the trace, a list of events. Operator events have ``"cat": "Node"``,
            a ``name`` ending in ``_kernel_time``, ``dur`` in microseconds and
            ``args.op_name`` (the ONNX node type, e.g. ``MatMulNBits``); each
            ``InferenceSession::Run`` is a ``"cat": "Session"`` event named ``model_run``
            spanning its operators.
        n_runs: keep only the operators of the last ``n_runs`` model runs (the request;
            earlier runs filled the KV cache to the requested depth); None keeps all.

    Returns:
        ``{"categories_ms": {category: ms for every category of
        meltbench.measure.profile.CATEGORIES}, "ops": [{"name", "category", "ms",
        "count"}, ...] (the 20 slowest operator types, slowest first), "total_ms",
        "model_runs", "excluded_runs", "source": "onnxruntime profiling"}``.
    """
    from meltbench.measure.profile import classify, summarize_ops

    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e.get("ts", 0),
    )
    start_ts = 0
    excluded = 0
    if n_runs is not None and len(runs) > n_runs:
        excluded = len(runs) - n_runs
        start_ts = runs[excluded].get("ts", 0)
    per_op: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        if e.get("ts", 0) < start_ts:
            continue
        op = (e.get("args") or {}).get("op_name") or str(e["name"])
        entry = per_op.setdefault(op, [0.0, 0])
        entry[0] += float(e.get("dur", 0)) / 1000.0
        entry[1] += 1
    ops = sorted(per_op.items(), key=lambda kv: kv[1][0], reverse=True)
    return {
        "categories_ms": summarize_ops((op, v[0]) for op, v in per_op.items()),
        "ops": [
            {"name": op, "category": classify(op), "ms": ms, "count": int(count)}
            for op, (ms, count) in ops[:_TOP_OPS]
        ],
        "total_ms": sum(v[0] for v in per_op.values()),
        "model_runs": len(runs) - excluded,
        "excluded_runs": excluded,
        "source": "onnxruntime profiling",
    }


class OnnxRuntimeGenAIEngine(Engine):
    """ONNX Runtime GenAI (ONNX folders from its model builder: int4 or fp32)."""

    name = "onnxruntime"
    description = "ONNX Runtime GenAI: ONNX models from its model builder (int4, fp32), CPU"
    requires = ("onnxruntime_genai",)
    install_hint = "pip install 'meltbench[onnx]'"
    model_formats = ("onnx-genai",)
    dtypes = frozenset({"int4", "fp32"})
    supports_profile = True

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._og: Any = None
        self._path: Path | None = None
        self._genai: dict[str, Any] = {}
        self._built: dict[str, Any] = {}
        self._model: Any = None
        self._gen: Any = None
        self._depth: list[int] = []

    @classmethod
    def check_settings(cls, settings: EngineSettings) -> str | None:
        """The dtype check of :class:`Engine`, plus ``device`` in ``cpu`` / ``cuda``."""
        problem = super().check_settings(settings)
        if problem:
            return problem
        if settings.device is not None and settings.device not in _PROVIDERS:
            return (
                f"engine {cls.name!r} has no device {settings.device!r}; choose: "
                f"{', '.join(_PROVIDERS)}"
            )
        return None

    # -- loading ------------------------------------------------------------------------

    def load(self, model: ModelHandle) -> None:
        """Load an ONNX Runtime GenAI folder and prepare a generator of ``n_ctx`` tokens.

        Raises:
            UsageError: no ``genai_config.json`` in the folder, ``--dtype`` different from
                the precision the folder was built with (``meltbench.json``), a context
                longer than the model's ``context_length``, or CUDA asked for without a
                CUDA build of onnxruntime-genai.
            RuntimeError (from onnxruntime-genai): if the model cannot be loaded.
        """
        import onnxruntime_genai as og

        path = Path(model.path or "")
        try:
            self._genai = json.loads((path / "genai_config.json").read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"not an ONNX Runtime GenAI folder: {path} (no readable genai_config.json: "
                f"{exc}); build one with: meltbench convert MODEL --to onnx"
            ) from exc
        self._built = read_build_record(path)
        s = self.settings
        check_dtype(s.dtype, self._built, path, "onnx")
        context = (self._genai.get("model") or {}).get("context_length")
        if context is not None and s.n_ctx > int(context):
            raise UsageError(
                f"context {s.n_ctx} is longer than the model's context_length {context}; "
                "lower --ctx or the workload"
            )
        if s.device == "cuda" and not og.is_cuda_available():
            raise UsageError(
                "--device cuda needs a CUDA build of onnxruntime-genai "
                "(pip install onnxruntime-genai-cuda) and a model built for CUDA"
            )
        self._og = og
        self._path = path
        self._model = og.Model(self._config())
        self.reset()

    def _config(self, profile_prefix: str | None = None) -> Any:
        og = self._og
        config = og.Config(str(self._path))
        config.clear_providers()
        provider = _PROVIDERS.get(self.settings.device or "cpu")
        if provider:
            config.append_provider(provider)
        session: dict[str, Any] = {
            "intra_op_num_threads": int(self.settings.threads),
            "inter_op_num_threads": 1,
        }
        if profile_prefix is not None:
            session["enable_profiling"] = profile_prefix
        config.overlay(
            json.dumps({"model": {"eos_token_id": [], "decoder": {"session_options": session}}})
        )
        return config

    @property
    def max_length(self) -> int:
        """Tokens the generator's KV cache holds: ``n_ctx``, raised to the sliding-window
        size of models with windowed attention layers (GenAI's GroupQueryAttention
        refuses a KV cache shorter than its ``local_window_size``: Gemma 3 has 512)."""
        decoder = (self._genai.get("model") or {}).get("decoder") or {}
        window = (decoder.get("sliding_window") or {}).get("window_size") or 0
        return max(int(self.settings.n_ctx), int(window))

    def _new_generator(self, model: Any) -> Any:
        og = self._og
        params = og.GeneratorParams(model)
        n = self.max_length
        params.set_search_options(
            max_length=n, min_length=n, do_sample=False, num_beams=1, batch_size=1
        )
        return og.Generator(model, params)

    # -- facts --------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """Vocabulary size: ``model.vocab_size`` of ``genai_config.json``."""
        return int(self._genai["model"]["vocab_size"])

    def bos_token(self) -> int | None:
        """``model.bos_token_id`` of ``genai_config.json``, unless the folder's
        ``tokenizer_config.json`` says ``add_bos_token: false``; None if there is none."""
        bos = (self._genai.get("model") or {}).get("bos_token_id")
        if isinstance(bos, list):
            bos = bos[0] if bos else None
        if bos is None:
            return None
        try:
            tok = json.loads((Path(self._path or "") / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            tok = {}
        if tok.get("add_bos_token") is False:
            return None
        return int(bos)

    def info(self) -> dict[str, Any]:
        """Engine facts: versions, provider, threads, precision, GenAI model type."""
        import onnxruntime

        og = self._og
        model_cfg = self._genai.get("model") or {}
        session = (model_cfg.get("decoder") or {}).get("session_options") or {}
        return {
            "name": self.name,
            "library": "onnxruntime-genai",
            "version": getattr(og, "__version__", None),
            "onnxruntime_version": onnxruntime.__version__,
            "device": self.settings.device or "cpu",
            "device_type": str(self._model.device_type) if self._model is not None else None,
            "provider": "CUDAExecutionProvider"
            if self.settings.device == "cuda"
            else "CPUExecutionProvider",
            "available_providers": list(onnxruntime.get_available_providers()),
            "dtype": self._built.get("precision"),
            "precision": self._built.get("precision"),
            "built_by": "meltbench" if self._built else None,
            "source": self._built.get("source"),
            "model_type": self._model.type if self._model is not None else model_cfg.get("type"),
            "model_path": str(self._path),
            "context_length": model_cfg.get("context_length"),
            "vocab_size": model_cfg.get("vocab_size"),
            "n_ctx": self.settings.n_ctx,
            "max_length": self.max_length,
            "n_threads": self.settings.threads,
            "inter_op_threads": 1,
            "model_provider_options": session.get("provider_options") or [],
            "eos": "ignored (eos_token_id overlaid with [], min_length = max_length)",
        }

    # -- requests -----------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new generator (empty KV cache of ``n_ctx`` tokens, position 0)."""
        self._gen = None
        self._depth = []
        if self._model is None:  # released by profile(): load the session again
            self._model = self._og.Model(self._config())
        self._gen = self._new_generator(self._model)

    def extend(self, tokens: Sequence[int]) -> None:
        """Run ``tokens`` through the model into the KV cache (GenAI's
        ``append_tokens``; synchronous on CPU), generating nothing."""
        tokens = [int(t) for t in tokens]
        self._gen.append_tokens(tokens)
        self._depth.extend(tokens)

    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Prefill ``prompt``, then yield ``n_gen`` greedy tokens one by one.

        Raises:
            RuntimeError: if GenAI ends the sequence before ``n_gen`` tokens (it can only
                do so at ``max_length`` = ``n_ctx``).
        """
        gen = self._gen
        gen.append_tokens([int(t) for t in prompt])
        for i in range(n_gen):
            if gen.is_done():
                raise RuntimeError(
                    f"onnxruntime-genai ended the sequence after {i} of {n_gen} tokens "
                    f"(max_length {self.max_length})"
                )
            gen.generate_next_token()
            yield int(gen.get_next_tokens()[0])

    def profile(self, prompt: Sequence[int], n_gen: int) -> dict[str, Any]:
        """One request (after the depth fill that followed the last :meth:`reset`) on a
        second ONNX Runtime session with profiling on; see :func:`summarize_trace`.

        The measuring session is released first, so the profile does not hold two copies
        of the weights (which would raise the run's peak RSS); the next :meth:`reset`
        loads it again. The trace files are written to a temporary folder and deleted.
        """
        depth = list(self._depth)
        self._gen = None
        self._model = None
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="meltbench-ort-profile-") as tmp:
            model = self._og.Model(self._config(profile_prefix=str(Path(tmp) / "ort")))
            gen = self._new_generator(model)
            if depth:
                gen.append_tokens(depth)
            for _ in self._stream_on(gen, prompt, n_gen):
                pass
            del gen
            del model  # ONNX Runtime writes the trace when the session ends
            gc.collect()
            traces = sorted(Path(tmp).glob("*.json"))
            if not traces:
                raise RuntimeError("ONNX Runtime wrote no profile (enable_profiling)")
            events = json.loads(traces[-1].read_text())
        if isinstance(events, dict):
            events = events.get("traceEvents", [])
        return summarize_trace(events, n_runs=n_gen)

    def _stream_on(self, gen: Any, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        gen.append_tokens([int(t) for t in prompt])
        for _ in range(n_gen):
            gen.generate_next_token()
            yield int(gen.get_next_tokens()[0])

    def unload(self) -> None:
        """Release the generator and the ONNX Runtime session."""
        self._gen = None
        self._model = None
        gc.collect()
