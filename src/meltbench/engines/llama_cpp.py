"""llama.cpp through llama-cpp-python's C API bindings (``pip install 'meltbench[llama]'``).

The engine talks to llama.cpp's C API directly (``llama_model_load_from_file``,
``llama_init_from_model``, ``llama_decode`` on ``llama_batch_get_one``), the way
llama-bench does, not through llama-cpp-python's high-level ``Llama`` class: that class
has defaults of its own (``flash_attn=False``, ``n_threads = cores // 2``, ...) and does
Python work per call. Every model and context parameter meltbench does not set takes
llama.cpp's own default (``llama_model_default_params()`` /
``llama_context_default_params()``); meltbench sets ``n_ctx``, ``n_batch``, ``n_ubatch``,
``n_threads``, ``n_threads_batch``, and ``no_perf = false`` (the perf counters below),
plus whatever ``-o`` options the user gives. The values in force are reported by
:meth:`LlamaCppEngine.info` under ``params``, with flash attention as llama.cpp resolved
it (``auto`` is decided at context creation and logged).

Two timing modes (``EngineSettings.timing``):

- ``generation`` (default): after each ``llama_decode`` the next token is chosen as an
  app does, greedily: the argmax of the last logits row, read in place through
  ``llama_get_logits_ith`` (no copy of the 262k-entry row). The time spent choosing is
  measured on its own and reported as ``t_sample_ms`` / ``n_sample``.
- ``engine``: llama-bench's definition of ``tg``: no token is chosen; the next input is
  a synthetic token (seeded random id) and each step is ``llama_decode`` +
  ``llama_synchronize``. The cost of choosing is then measured after each request
  (argmax over the final logits, ``SAMPLE_PROBES`` times) so every run reports it.

The engine's own counters come from llama.cpp's perf context (``llama_perf_context``:
``t_p_eval_ms``/``n_p_eval`` for prompt processing, ``t_eval_ms``/``n_eval`` for
single-token decode), reset before each timed request. The KV cache size is llama.cpp's
own figure, read from the ``llama_kv_cache: size = ...`` line it logs when it allocates
the cache.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from meltbench.engines.base import Engine, EngineSettings, ModelHandle
from meltbench.engines.llama_cpp_text import LlamaCppText

__all__ = ["LlamaCppEngine", "parse_kv_cache_log", "parse_system_info"]

_FEATURE = re.compile(r"([A-Za-z0-9_]+)\s*=\s*([0-9]+)")
#: ``llama_kv_cache: size = %7.2f MiB (%6u cells, %3d layers, ...), K (%s): %7.2f MiB,
#: V (%s): %7.2f MiB`` (src/llama-kv-cache.cpp)
_KV_LINE = re.compile(
    r"llama_kv_cache\w*: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers.*?"
    r"K \((\w+)\):\s*([\d.]+) MiB, V \((\w+)\):\s*([\d.]+) MiB"
)
_FA_AUTO = re.compile(r"Flash Attention (enabled|not supported)")
#: what llama.cpp logs when an allocation failed (then load raises MemoryError, the cause)
_ALLOCATION_FAILED = ("failed to allocate", "bad_alloc", "out of memory", "cannot allocate")
#: argmax calls timed after each request in ``engine`` timing, to report the sampling cost
SAMPLE_PROBES = 16

_MODEL_OPTIONS = ("n_gpu_layers", "main_gpu", "split_mode")
_LOAD_MODES = {-1: "auto", 0: "none", 1: "mmap", 2: "mlock", 3: "mmap+mlock", 4: "direct_io"}
_CONTEXT_OPTIONS = ("flash_attn", "type_k", "type_v", "offload_kqv", "swa_full", "op_offload")


def parse_system_info(text: str) -> dict[str, Any]:
    """Parse ``llama_print_system_info()`` output into ``{backend: {FEATURE: int}}``.

    Example: ``"CPU : AVX2 = 1 | FMA = 1 | "`` -> ``{"CPU": {"AVX2": 1, "FMA": 1}}``.
    Text outside ``NAME : K = V | ...`` groups is ignored.
    """
    result: dict[str, Any] = {}
    for chunk in re.split(r"\|\s*(?=[A-Za-z0-9_ ]+ : )", text):
        head, sep, rest = chunk.partition(" : ")
        if not sep:
            continue
        features = {k: int(v) for k, v in _FEATURE.findall(rest)}
        if features:
            result[head.strip()] = features
    return result


def parse_kv_cache_log(lines: Sequence[str]) -> dict[str, Any] | None:
    """llama.cpp's KV cache allocation, from the lines it logged while creating a context.

    Models with sliding-window layers log two caches (full and window); both are summed.

    Returns:
        ``{"bytes", "caches": [{"cells", "layers", "type_k", "type_v", "bytes"}],
        "source"}`` or None when no such line was logged. Sizes are printed by llama.cpp
        in MiB with two decimals, so ``bytes`` is exact to +-5 KiB per cache.
    """
    caches = []
    for line in lines:
        m = _KV_LINE.search(line)
        if m:
            caches.append(
                {
                    "cells": int(m.group(2)),
                    "layers": int(m.group(3)),
                    "type_k": m.group(4),
                    "type_v": m.group(6),
                    "bytes": round(float(m.group(1)) * 1024 * 1024),
                }
            )
    if not caches:
        return None
    return {
        "bytes": sum(c["bytes"] for c in caches),
        "caches": caches,
        "source": "llama.cpp log (llama_kv_cache: size = ... MiB)",
    }


def _ggml_type(value: Any) -> int:
    """A ggml type id from an int or a name (``f16``, ``q8_0``).

    Raises:
        ValueError: unknown name.
    """
    if isinstance(value, int):
        return value
    import gguf

    try:
        return int(gguf.GGMLQuantizationType[str(value).upper()])
    except KeyError:
        msg = f"unknown KV cache type {value!r}; use f16, bf16, q8_0, q4_0, ..."
        raise ValueError(msg) from None


def _ggml_type_name(value: int) -> str:
    import gguf

    try:
        return gguf.GGMLQuantizationType(int(value)).name.lower()
    except ValueError:
        return str(value)


def _flash_attn_type(lib: Any, value: Any) -> int:
    """llama.cpp's ``flash_attn_type`` from a bool or ``on``/``off``/``auto``/``-1..1``.

    Raises:
        ValueError: any other value.
    """
    text = str(value).strip().lower()
    table = {
        "true": lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "on": lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "1": lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "enabled": lib.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "false": lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        "off": lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        "0": lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        "disabled": lib.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        "auto": lib.LLAMA_FLASH_ATTN_TYPE_AUTO,
        "-1": lib.LLAMA_FLASH_ATTN_TYPE_AUTO,
    }
    if text not in table:
        raise ValueError(f"flash_attn must be on, off or auto, got {value!r}")
    return int(table[text])


def _load_mode(mp: Any) -> str:
    """How the weights are loaded: ``auto``, ``mmap``, ``none`` (read), ``mlock``, ..."""
    if hasattr(mp, "load_mode"):
        return _LOAD_MODES.get(int(mp.load_mode), str(mp.load_mode))
    mode = ("mmap" if mp.use_mmap else "none") + ("+mlock" if mp.use_mlock else "")
    return mode.replace("none+mlock", "mlock")


class _LogCapture:
    """llama.cpp's log callback: keeps every line; forwards warnings and errors to stderr
    (the worker's stderr, whose last lines become a failed run's cause).

    Levels are ggml.h's ``ggml_log_level``: 0 none, 1 debug, 2 info, 3 warn, 4 error,
    5 continuation of the previous line.

    The ctypes callback object must outlive every call from C, so one instance lives for
    the whole process (:data:`_LOG`).
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""
        self._forwarding = False
        self._installed = False
        self._callback: Any = None

    def install(self, lib: Any) -> None:
        if self._installed:
            return
        import ctypes
        import sys

        def on_log(level: int, text: bytes, _user: Any) -> None:
            chunk = text.decode("utf-8", errors="replace") if text else ""
            if level in (3, 4) or (level == 5 and self._forwarding):
                sys.stderr.write(chunk)
            if level != 5:
                self._forwarding = level in (3, 4)
            self._partial += chunk
            while "\n" in self._partial:
                line, self._partial = self._partial.split("\n", 1)
                if len(self.lines) < 5000:
                    self.lines.append(line)

        self._callback = lib.llama_log_callback(on_log)
        lib.llama_log_set(self._callback, ctypes.c_void_p(0))
        self._installed = True

    def mark(self) -> int:
        """Index of the next line (to read what one call logged)."""
        return len(self.lines)

    def last_error(self, since: int) -> str:
        """``"; llama.cpp: <line>"`` for the last line logged since ``since`` that looks
        like an error, or ``""``."""
        for line in reversed(self.lines[since:]):
            low = line.lower()
            if "error" in low or "failed" in low or "unable" in low or "invalid" in low:
                return f"; llama.cpp: {line.strip()[:300]}"
        return ""


_LOG = _LogCapture()
_BACKEND_READY = False


class LlamaCppEngine(LlamaCppText, Engine):
    """llama.cpp (GGUF models, every quantization type llama.cpp supports)."""

    name = "llama.cpp"
    description = "llama.cpp (C API via llama-cpp-python): GGUF, every quantization type"
    requires = ("llama_cpp",)
    install_hint = "pip install 'meltbench[llama]'"
    model_formats = ("gguf",)
    timing_modes = ("generation", "engine")
    allowed_options = frozenset(
        {*_MODEL_OPTIONS, *_CONTEXT_OPTIONS, "use_mmap", "use_mlock", "numa"}
    )

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._lib: Any = None
        self._model: Any = None
        self._ctx: Any = None
        self._n_vocab = 0
        self._one: Any = None
        self._params: dict[str, Any] = {}
        self._kv: dict[str, Any] | None = None
        self._t_sample_ns = 0
        self._n_sample = 0
        self._requests = 0

    @classmethod
    def check_settings(cls, settings: EngineSettings) -> str | None:
        """Also checks that ``flash_attn``, ``type_k`` and ``type_v`` options are valid."""
        problem = super().check_settings(settings)
        if problem:
            return problem
        opts = settings.options
        try:
            for key in ("type_k", "type_v"):
                if key in opts:
                    _ggml_type(opts[key])
            if "flash_attn" in opts and str(opts["flash_attn"]).strip().lower() not in {
                "true", "false", "on", "off", "auto", "enabled", "disabled", "0", "1", "-1",
            }:  # fmt: skip
                return f"-o flash_attn: expected on, off or auto, got {opts['flash_attn']!r}"
        except ValueError as exc:
            return f"-o {key}: {exc}"
        return None

    def load(self, model: ModelHandle) -> None:
        """Load the GGUF file and create a context of ``settings.n_ctx`` tokens.

        Raises:
            MemoryError: llama.cpp logged that an allocation failed (e.g. under
                ``--memory-limit``), with its line.
            RuntimeError: llama.cpp cannot load the model or create the context for
                another reason (the last error line llama.cpp logged is in the message).
        """
        import llama_cpp as lib

        global _BACKEND_READY
        self._lib = lib
        _LOG.install(lib)
        if not _BACKEND_READY:
            lib.llama_backend_init()
            _BACKEND_READY = True
        s = self.settings
        opts = dict(s.options)
        if "numa" in opts:  # ggml_numa_strategy: 0 disabled, 1 distribute, 2 isolate, ...
            lib.llama_numa_init(int(opts["numa"]))

        mp = lib.llama_model_default_params()
        for key in _MODEL_OPTIONS:
            if key in opts:
                setattr(mp, key, opts[key])
        if "use_mmap" in opts or "use_mlock" in opts:
            mmap, mlock = bool(opts.get("use_mmap", True)), bool(opts.get("use_mlock", False))
            if hasattr(mp, "load_mode"):  # llama.cpp >= 2026: one load_mode enum
                mp.load_mode = (mmap and 1) + (mlock and 2)  # LLAMA_LOAD_MODE_*
            else:
                mp.use_mmap, mp.use_mlock = mmap, mlock
        mark = _LOG.mark()
        self._model = lib.llama_model_load_from_file(str(model.path).encode(), mp)
        if not self._model:
            why = _LOG.last_error(mark)
            if any(m in why.lower() for m in _ALLOCATION_FAILED):
                raise MemoryError(f"llama.cpp could not allocate the model {model.path}{why}")
            raise RuntimeError(f"llama.cpp could not load the model {model.path}{why}")

        cp = lib.llama_context_default_params()
        cp.n_ctx = s.n_ctx
        cp.n_batch = s.batch
        cp.n_ubatch = s.ubatch
        cp.n_threads = s.threads
        cp.n_threads_batch = s.threads
        cp.no_perf = False
        if "flash_attn" in opts:
            cp.flash_attn_type = _flash_attn_type(lib, opts["flash_attn"])
        for key in ("type_k", "type_v"):
            if key in opts:
                setattr(cp, key, _ggml_type(opts[key]))
        for key in ("offload_kqv", "swa_full", "op_offload"):
            if key in opts:
                setattr(cp, key, bool(opts[key]))
        self._ctx = lib.llama_init_from_model(self._model, cp)
        if not self._ctx:
            why = _LOG.last_error(mark)
            if any(m in why.lower() for m in _ALLOCATION_FAILED):
                raise MemoryError(f"llama.cpp could not allocate the context{why}")
            raise RuntimeError(
                "llama.cpp could not create the context; try a smaller --ctx or other -o "
                f"options{why}"
            )
        logged = _LOG.lines[mark:]
        self._kv = parse_kv_cache_log(logged)
        self._params = self._resolved_params(mp, cp, logged)
        vocab = lib.llama_model_get_vocab(self._model)
        self._n_vocab = int(lib.llama_vocab_n_tokens(vocab))
        self._one = (lib.llama_token * 1)()

    def _resolved_params(self, mp: Any, cp: Any, logged: Sequence[str]) -> dict[str, Any]:
        """The model and context parameters in force (llama.cpp's defaults included)."""
        lib = self._lib
        fa_requested = {
            int(lib.LLAMA_FLASH_ATTN_TYPE_AUTO): "auto",
            int(lib.LLAMA_FLASH_ATTN_TYPE_ENABLED): "on",
            int(lib.LLAMA_FLASH_ATTN_TYPE_DISABLED): "off",
        }.get(int(cp.flash_attn_type), str(cp.flash_attn_type))
        if fa_requested == "auto":
            found = next((m.group(1) for m in map(_FA_AUTO.search, logged) if m), None)
            fa_used = None if found is None else found == "enabled"
        else:
            fa_used = fa_requested == "on"
        return {
            "n_ctx": int(lib.llama_n_ctx(self._ctx)),
            "n_batch": int(lib.llama_n_batch(self._ctx)),
            "n_ubatch": int(lib.llama_n_ubatch(self._ctx)),
            "n_seq_max": int(cp.n_seq_max),
            "n_threads": int(cp.n_threads),
            "n_threads_batch": int(cp.n_threads_batch),
            "flash_attn": fa_requested,
            "flash_attn_used": fa_used,
            "type_k": _ggml_type_name(cp.type_k),
            "type_v": _ggml_type_name(cp.type_v),
            "swa_full": bool(cp.swa_full),
            "offload_kqv": bool(cp.offload_kqv),
            "op_offload": bool(cp.op_offload),
            "kv_unified": bool(cp.kv_unified),
            "no_perf": bool(cp.no_perf),
            "n_gpu_layers": int(mp.n_gpu_layers),
            "main_gpu": int(mp.main_gpu),
            "split_mode": int(mp.split_mode),
            "load_mode": _load_mode(mp),
            "timing": self.settings.timing,
        }

    @property
    def n_vocab(self) -> int:
        """Vocabulary size of the loaded model."""
        return self._n_vocab

    def bos_token(self) -> int | None:
        """BOS id when the vocabulary asks for one to be added, else None."""
        lib = self._lib
        vocab = lib.llama_model_get_vocab(self._model)
        if lib.llama_vocab_get_add_bos(vocab):
            return int(lib.llama_vocab_bos(vocab))
        return None

    def info(self) -> dict[str, Any]:
        """Engine facts: versions, model description, resolved parameters, KV cache size,
        system info."""
        import ctypes

        lib = self._lib
        desc = ctypes.create_string_buffer(256)
        lib.llama_model_desc(self._model, desc, len(desc))
        system_info = lib.llama_print_system_info().decode(errors="replace").strip()
        p = self._params
        gpu = bool(lib.llama_supports_gpu_offload()) and p.get("n_gpu_layers", 0) > 0
        return {
            "name": self.name,
            "library": "llama-cpp-python",
            "version": getattr(lib, "__version__", None),
            "device": "gpu" if gpu else "cpu",
            "model_desc": desc.value.decode(errors="replace"),
            "model_n_params": int(lib.llama_model_n_params(self._model)),
            "model_size_bytes": int(lib.llama_model_size(self._model)),
            "n_ctx": p["n_ctx"],
            "n_batch": p["n_batch"],
            "n_ubatch": p["n_ubatch"],
            "n_threads": self.settings.threads,
            "options": dict(self.settings.options),
            "params": dict(p),
            "kv_cache": self._kv,
            "system_info": system_info,
            "features": parse_system_info(system_info),
        }

    def _decode(self, tokens: Sequence[int]) -> None:
        """``llama_decode`` ``tokens`` in ``n_batch`` chunks (logits of the last token).

        Raises:
            RuntimeError: llama_decode failed (e.g. the KV cache is full).
        """
        lib, ctx = self._lib, self._ctx
        step = self.settings.batch
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            arr = (lib.llama_token * len(chunk))(*chunk)
            rc = lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(chunk)))
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} (KV cache full or bad batch)")

    def _decode_one(self, token: int) -> None:
        lib = self._lib
        self._one[0] = token
        rc = lib.llama_decode(self._ctx, lib.llama_batch_get_one(self._one, 1))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} (KV cache full or bad batch)")

    def _argmax(self) -> int:
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self._ctx, -1)
        return int(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).argmax())

    def _timed_argmax(self) -> int:
        """Argmax of the last logits, timed after the backend finished computing them."""
        self._lib.llama_synchronize(self._ctx)
        t0 = time.perf_counter_ns()
        token = self._argmax()
        self._t_sample_ns += time.perf_counter_ns() - t0
        self._n_sample += 1
        return token

    def reset(self) -> None:
        """Clear the KV cache (all sequences, data included)."""
        lib = self._lib
        lib.llama_memory_clear(lib.llama_get_memory(self._ctx), True)

    def extend(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` into the KV cache and wait for the backend to finish.

        ``llama_decode`` may return before the computation ends (GPU backends), and
        llama.cpp books perf counters at ``llama_synchronize``; without the explicit
        synchronization the fill would leak into the timed request and its counters.
        """
        self._decode(list(tokens))
        self._lib.llama_synchronize(self._ctx)

    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Prefill ``prompt``, then yield ``n_gen`` tokens one by one.

        In ``generation`` timing the tokens are the greedy choices; in ``engine`` timing
        they are the synthetic inputs (seeded by the request's seed and index).
        """
        if self.settings.timing == "engine":
            yield from self._stream_engine(prompt, n_gen)
            return
        self._decode(list(prompt))
        token = self._timed_argmax()
        yield token
        for _ in range(n_gen - 1):
            self._decode_one(token)
            token = self._timed_argmax()
            yield token

    def _stream_engine(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """llama-bench's loop: decode + synchronize, next input a random token."""
        lib, ctx = self._lib, self._ctx
        rng = random.Random(self.settings.seed * 1_000_003 + self._requests)
        self._requests += 1
        n_vocab = self._n_vocab
        self._decode(list(prompt))
        lib.llama_synchronize(ctx)
        token = rng.randrange(n_vocab)
        yield token
        for _ in range(n_gen - 1):
            self._decode_one(token)
            lib.llama_synchronize(ctx)
            token = rng.randrange(n_vocab)
            yield token
        for _ in range(SAMPLE_PROBES):  # untimed by the worker: after the last token
            self._timed_argmax()

    def reset_counters(self) -> None:
        """Reset llama.cpp's perf context and the sampling-time counter."""
        self._lib.llama_perf_context_reset(self._ctx)
        self._t_sample_ns = 0
        self._n_sample = 0

    def counters(self) -> dict[str, float]:
        """llama.cpp's perf context (prompt and decode ms and token counts), and the time
        spent choosing tokens (``t_sample_ms`` over ``n_sample`` argmax calls)."""
        data = self._lib.llama_perf_context(self._ctx)
        return {
            "t_p_eval_ms": float(data.t_p_eval_ms),
            "n_p_eval": float(data.n_p_eval),
            "t_eval_ms": float(data.t_eval_ms),
            "n_eval": float(data.n_eval),
            "t_sample_ms": self._t_sample_ns / 1e6,
            "n_sample": float(self._n_sample),
        }

    def unload(self) -> None:
        """Free the context and the model."""
        lib = self._lib
        if self._ctx is not None:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            lib.llama_model_free(self._model)
            self._model = None
