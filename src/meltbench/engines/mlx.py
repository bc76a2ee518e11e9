"""MLX through mlx-lm (``pip install 'meltbench[mlx]'``): Apple silicon (Metal) and Linux CPU.

Models are Hugging Face folders (``config.json`` + ``model*.safetensors``), plain or
MLX-converted (``mlx_lm.convert``, quantized included). They are loaded with
``mlx_lm.utils.load_model``, which builds the architecture named by ``model_type`` and
loads the weights, and needs no tokenizer: meltbench feeds token ids. Configs written
by transformers >= 5 keep RoPE settings only under ``rope_parameters``, which mlx-lm
0.32 does not read for Llama, Qwen2 or Gemma 3; :func:`rope_overrides` passes them on
under the older top-level names (recorded as ``config_overrides`` in ``info()``).

The timed loop is mlx-lm's own ``mlx_lm.generate.generate_step`` (0.32), written out so
that every token is an ``int`` when it is yielded and nothing else runs:

- **Prefill.** All prompt tokens but the last are fed to the model in chunks of
  ``prefill_step_size`` tokens (mlx-lm's default, 2048, read from ``generate_step``'s
  signature; option ``-o prefill_step_size=N``). After each chunk only the KV cache
  state is evaluated (``mx.eval([c.state for c in cache])``): MLX's lazy graph computes
  only what the cache needs, never the output projection over prompt positions. Then
  ``mx.clear_cache()``.
  The last prompt token is a step of its own; its logits give the first token.
- **Decode.** The next token is ``argmax`` of the last position's logits (greedy, on the
  raw logits; mlx-lm's greedy sampler takes the argmax of ``logits - logsumexp``, the
  same token up to rounding ties). By default the loop is pipelined as in
  ``generate_step``: step ``k + 1`` is built and started with ``mx.async_eval`` before
  token ``k`` is read with ``.item()``. A yielded token is therefore always computed;
  the next one is already under way (so TTFT includes building step 2's graph, as in
  mlx-lm). ``-o async_eval=false`` gives the strictly sequential loop (``mx.eval``
  then yield). ``mx.clear_cache()`` runs every 256 tokens, as in mlx-lm.
  End-of-sequence is ignored: exactly ``n_gen`` tokens.

Importing mlx-lm imports transformers (its tokenizer code), and with it torch when
installed: about 2 s and 240 MB of resident memory on a 2-core Linux machine, counted in
``load_ms`` and ``peak_rss_bytes`` as in any program that uses mlx-lm.

MLX is lazy: nothing is computed until an array is evaluated. ``extend`` therefore
evaluates the cache state before returning, so no depth-fill work leaks into the timed
request, and ``load`` evaluates all parameters (after the optional dtype cast).

Device: ``--device cpu`` or ``gpu`` (``mx.gpu``: Metal on Apple silicon, CUDA with
``mlx[cuda]``); default ``mx.default_device()``. MLX has no thread-count setting:
``--threads`` is not applied. On Linux the ``mlx[cpu]`` wheel runs its CPU kernels on
one stream thread and calls the BLAS it ships with (``mlx_cpu.libs``: the reference
BLAS 3.10 in the 0.32 wheels, single-threaded); ``info()["libraries"]`` lists the
libraries MLX actually mapped into the process.

No profiler: MLX exposes no per-operator timings (only Metal frame captures, which need
Xcode), so ``supports_profile`` is False. No engine counters either: mlx-lm keeps no
timers of its own outside ``generate``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from meltbench.engines.base import Engine, EngineSettings, ModelHandle

__all__ = ["MlxEngine", "bos_from_folder", "default_prefill_step_size", "rope_overrides"]

_DEVICES = ("cpu", "gpu")
_FALLBACK_PREFILL_STEP = 2048


def default_prefill_step_size() -> int:
    """mlx-lm's prompt chunk size: ``generate_step``'s ``prefill_step_size`` default.

    Read from the installed mlx-lm (2048 in 0.32); 2048 if it cannot be read.
    """
    import inspect

    try:
        from mlx_lm.generate import generate_step

        default = inspect.signature(generate_step).parameters["prefill_step_size"].default
    except (ImportError, KeyError, TypeError, ValueError):
        return _FALLBACK_PREFILL_STEP
    return default if isinstance(default, int) and default > 0 else _FALLBACK_PREFILL_STEP


def _config_value(config: dict[str, Any], key: str) -> Any:
    """``config[key]``, else ``config["text_config"][key]`` (multimodal configs), else None."""
    if config.get(key) is not None:
        return config[key]
    text_config = config.get("text_config") or {}
    return text_config.get(key)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _template_adds(post_processor: Any, bos_token: str | None, bos_id: int) -> bool | None:
    """Whether a tokenizer.json post-processor puts the BOS token first, None if unknown."""
    if not isinstance(post_processor, dict):
        return None
    kind = post_processor.get("type")
    if kind == "Sequence":
        verdicts = [
            _template_adds(p, bos_token, bos_id) for p in post_processor.get("processors", [])
        ]
        known = [v for v in verdicts if v is not None]
        return any(known) if known else None
    if kind == "TemplateProcessing":
        single = post_processor.get("single") or []
        first = single[0].get("SpecialToken") if single and isinstance(single[0], dict) else None
        if not first:
            return False
        token = first.get("id")
        ids = (post_processor.get("special_tokens") or {}).get(token, {}).get("ids", [])
        return token == bos_token or bos_id in ids
    if kind in ("BertProcessing", "RobertaProcessing"):
        return True  # [CLS] / <s> first
    return False  # ByteLevel and other processors add no special tokens


def bos_from_folder(folder: Path, config: dict[str, Any]) -> int | None:
    """The BOS id a model's tokenizer puts first, decided from files only (no tokenizer).

    Rules, first that applies:

    1. ``tokenizer_config.json`` has a boolean ``add_bos_token`` (slow/sentencepiece
       tokenizers, Llama 2, Gemma): BOS iff it is true.
    2. ``tokenizer.json`` has a ``post_processor`` (fast tokenizers): BOS iff its
       ``TemplateProcessing`` ``single`` template starts with the BOS token (Llama 3);
       ``ByteLevel`` (Qwen2) adds none.
    3. No tokenizer files (e.g. a folder of random weights): BOS iff ``bos_token_id`` is
       set in ``config.json``, as transformers' ``generate`` would start an empty prompt.

    Args:
        folder: the Hugging Face folder.
        config: its parsed ``config.json``.

    Returns:
        ``config.json``'s ``bos_token_id`` (``text_config``'s if nested; the first if a
        list) when the tokenizer adds it, else None. None also when no id is known.
    """
    bos = _config_value(config, "bos_token_id")
    if isinstance(bos, list):
        bos = bos[0] if bos else None
    if bos is None:
        return None
    bos = int(bos)
    tok_config = _read_json(folder / "tokenizer_config.json")
    if isinstance(tok_config, dict) and isinstance(tok_config.get("add_bos_token"), bool):
        return bos if tok_config["add_bos_token"] else None
    if (folder / "tokenizer.json").is_file():
        tokenizer = _read_json(folder / "tokenizer.json")
        if isinstance(tokenizer, dict):
            bos_token = tok_config.get("bos_token") if isinstance(tok_config, dict) else None
            if isinstance(bos_token, dict):
                bos_token = bos_token.get("content")
            verdict = _template_adds(tokenizer.get("post_processor"), bos_token, bos)
            if verdict is not None:
                return bos if verdict else None
    return bos


def _legacy_rope(config: dict[str, Any]) -> dict[str, Any]:
    """Top-level RoPE keys for one config level that only has transformers 5's form."""
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or config.get("rope_theta") is not None:
        return {}
    if "rope_theta" in params:  # one RoPE for all layers
        full, local = params, None
    else:  # per layer type (Gemma 3): full attention is global, sliding is local
        full, local = params.get("full_attention") or {}, params.get("sliding_attention")
    out: dict[str, Any] = {}
    if full.get("rope_theta") is not None:
        out["rope_theta"] = full["rope_theta"]
    if isinstance(local, dict) and local.get("rope_theta") is not None:
        out["rope_local_base_freq"] = local["rope_theta"]
    if full.get("rope_type", "default") != "default" and config.get("rope_scaling") is None:
        out["rope_scaling"] = dict(full)
    if "partial_rotary_factor" in full and "partial_rotary_factor" not in config:
        out["partial_rotary_factor"] = full["partial_rotary_factor"]
    return out


def rope_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """Config keys to add so that mlx-lm reads the RoPE of a transformers >= 5 config.

    transformers 5 writes RoPE settings only as ``rope_parameters`` (``{"rope_theta",
    "rope_type", "factor", ...}``, or one such dict per layer type, e.g. Gemma 3's
    ``full_attention`` / ``sliding_attention``), while mlx-lm 0.32's Llama, Qwen2 and
    Gemma 3 model arguments read the older top-level ``rope_theta``, ``rope_scaling`` and
    ``rope_local_base_freq`` and silently fall back to their own defaults (Llama 10,000,
    Qwen2 1,000,000) when those are missing. This maps the new form to the old keys:
    ``rope_theta`` (of full attention), ``rope_local_base_freq`` (of sliding attention),
    ``rope_scaling`` (the parameters dict, when its ``rope_type`` is not ``default``) and
    ``partial_rotary_factor``. Keys already present at the top level are kept.

    Args:
        config: the parsed ``config.json``; a nested ``text_config`` is handled too.

    Returns:
        the keys to merge into the config (``load_model(model_config=...)``); empty
        when the config already has the old keys or no ``rope_parameters``.
    """
    out = _legacy_rope(config)
    text_config = config.get("text_config")
    if isinstance(text_config, dict):
        nested = _legacy_rope(text_config)
        if nested:
            out["text_config"] = {**text_config, **nested}
    return out


def _mlx_libraries() -> list[str]:
    """Shared libraries that MLX brought into this process (``libmlx``, its BLAS, LAPACK).

    Source: ``/proc/self/maps`` (Linux): mapped ``.so`` files whose path lies in an
    ``mlx`` package folder (``mlx/lib``, ``mlx_cpu.libs``, ...). Empty elsewhere (macOS
    uses the system's Accelerate framework).
    """
    found: set[str] = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(None, 1)[-1]
                parent, _, name = path.rpartition("/")
                if ".so" in name and "/mlx" in parent:
                    found.add(name)
    except OSError:
        return []
    return sorted(found)


class MlxEngine(Engine):
    """MLX through mlx-lm: Hugging Face and MLX-converted folders, Metal GPU or CPU."""

    name = "mlx"
    description = "MLX through mlx-lm: HF/MLX safetensors folders, Apple GPU (Metal) or CPU"
    requires = ("mlx", "mlx_lm")
    install_hint = "pip install 'meltbench[mlx]'"
    model_formats = ("hf",)
    dtypes = frozenset({"float32", "bfloat16", "float16"})
    allowed_options = frozenset({"prefill_step_size", "async_eval"})
    supports_profile = False

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._mx: Any = None
        self._model: Any = None
        self._config: dict[str, Any] = {}
        self._path: Path | None = None
        self._device: Any = None
        self._stream: Any = None
        self._cache: list[Any] = []
        self._bos: int | None = None
        self._overrides: dict[str, Any] = {}
        opts = settings.options
        self._prefill_step: int | None = opts.get("prefill_step_size")
        self._async_eval = bool(opts.get("async_eval", True))

    @classmethod
    def check_settings(cls, settings: EngineSettings) -> str | None:
        """The base dtype check, then device and option checks (one line, or None).

        ``device`` must be ``cpu`` or ``gpu``; ``gpu`` must be available to the installed
        MLX (``mx.is_available(mx.gpu)``: Metal, or CUDA with ``mlx[cuda]``; checked on
        this machine). ``prefill_step_size`` must be a positive integer and
        ``async_eval`` a boolean.
        """
        problem = super().check_settings(settings)
        if problem:
            return problem
        device = settings.device
        if device is not None and device not in _DEVICES:
            return f"engine 'mlx' has no device {device!r}; choose: cpu, gpu"
        if device == "gpu":
            try:
                import mlx.core as mx
            except ImportError:
                return None  # the missing library is reported on its own
            if not mx.is_available(mx.gpu):
                return (
                    "engine 'mlx' has no GPU here (mlx without Metal or CUDA); "
                    "use --device cpu, or run on Apple silicon"
                )
        step = settings.options.get("prefill_step_size")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
            return f"mlx option prefill_step_size must be a positive integer, got {step!r}"
        flag = settings.options.get("async_eval")
        if flag is not None and not isinstance(flag, bool):
            return f"mlx option async_eval must be true or false, got {flag!r}"
        return None

    def load(self, model: ModelHandle) -> None:
        """Load a Hugging Face / MLX folder, cast it to ``settings.dtype``, evaluate it.

        Weights are loaded lazily (``load_model(lazy=True)``), cast with
        ``Module.set_dtype`` (floating parameters only; quantized integer weights stay),
        then evaluated once, so the full-precision copy never needs to be resident
        beside the cast one.

        Raises:
            ValueError: not an ``hf`` handle; unreadable ``config.json``; an
                architecture mlx-lm does not support (from mlx-lm); ``device`` ``gpu``
                without a GPU backend.
            FileNotFoundError: no ``model*.safetensors`` in the folder (from mlx-lm).
        """
        import mlx.core as mx
        from mlx_lm.models.cache import make_prompt_cache
        from mlx_lm.utils import load_model

        if model.format != "hf" or not model.path:
            raise ValueError(f"engine 'mlx' loads Hugging Face folders, got {model.format!r}")
        self._mx = mx
        if self.settings.device == "gpu":
            if not mx.is_available(mx.gpu):
                raise ValueError("mlx has no GPU backend here (no Metal, no CUDA)")
            self._device = mx.gpu
        elif self.settings.device == "cpu":
            self._device = mx.cpu
        else:
            self._device = mx.default_device()
        mx.set_default_device(self._device)
        self._stream = mx.new_thread_local_stream(self._device)
        if self._prefill_step is None:
            self._prefill_step = default_prefill_step_size()
        self._path = Path(model.path)
        try:
            raw_config = json.loads((self._path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {self._path / 'config.json'}: {exc}") from exc
        self._overrides = rope_overrides(raw_config)
        with mx.stream(self._stream):
            net, config = load_model(self._path, lazy=True, model_config=self._overrides)
            if self.settings.dtype is not None:
                net.set_dtype(getattr(mx, self.settings.dtype))
            mx.eval(net.parameters())
        self._model, self._config = net, config
        self._bos = bos_from_folder(self._path, config)
        self._cache = make_prompt_cache(net)

    @property
    def n_vocab(self) -> int:
        """``vocab_size`` of ``config.json`` (``text_config``'s for nested configs).

        Raises:
            ValueError: if the config has no vocabulary size.
        """
        vocab = _config_value(self._config, "vocab_size")
        if vocab is None:
            raise ValueError("config.json has no vocab_size (nor text_config.vocab_size)")
        return int(vocab)

    def bos_token(self) -> int | None:
        """BOS id if the model's tokenizer adds one first, else None (:func:`bos_from_folder`)."""
        return self._bos

    def _weights_summary(self) -> dict[str, Any]:
        """dtype, params_by_dtype, n_params, stored_elements, weights_bytes (see info)."""
        from mlx.utils import tree_flatten

        mx = self._mx
        leaves = [v for _, v in tree_flatten(self._model.parameters())]
        by_dtype: dict[str, int] = {}
        for v in leaves:
            key = str(v.dtype).removeprefix("mlx.core.")
            by_dtype[key] = by_dtype.get(key, 0) + v.size
        floating = {k: n for k, n in by_dtype.items() if mx.issubdtype(getattr(mx, k), mx.floating)}
        pool = floating or by_dtype
        stored = sum(v.size for v in leaves)
        try:
            from mlx_lm.utils import get_total_parameters

            n_params = int(get_total_parameters(self._model))
        except ImportError:
            n_params = stored
        return {
            "dtype": max(pool, key=pool.__getitem__) if pool else None,
            "params_by_dtype": by_dtype,
            "n_params": n_params,
            "stored_elements": stored,
            "weights_bytes": sum(v.nbytes for v in leaves),
        }

    def info(self) -> dict[str, Any]:
        """Engine facts.

        Returns:
            name, library (``mlx-lm``), version (mlx-lm), mlx_version, device (``cpu`` or
            ``gpu``), device_info (``mx.device_info``), dtype (dominant floating dtype of
            the loaded weights, after any cast), params_by_dtype (elements per dtype),
            n_params (``mlx_lm.utils.get_total_parameters``: the sum of parameter array
            sizes, with quantized weights counted unpacked, scales and biases not),
            stored_elements (sum of the stored array sizes), weights_bytes,
            quantization (the config's, or None), config_overrides (RoPE keys added for
            mlx-lm, :func:`rope_overrides`), architecture (config ``model_type``),
            model_class, prefill_step_size, async_eval, n_ctx, n_threads (None: MLX has
            no thread setting), threads_note, libraries (shared libraries MLX mapped in,
            BLAS included; Linux only), metal_available, cuda_available, gpu_available,
            bos_token_id.
        """
        import mlx_lm

        mx = self._mx
        device = "gpu" if self._device == mx.gpu else "cpu"
        try:
            device_info = dict(mx.device_info(self._device))
        except (AttributeError, TypeError, ValueError, RuntimeError):
            device_info = {}
        cls = type(self._model)
        return {
            "name": self.name,
            "library": "mlx-lm",
            "version": getattr(mlx_lm, "__version__", None),
            "mlx_version": getattr(mx, "__version__", None),
            "device": device,
            "device_info": device_info,
            **self._weights_summary(),
            "quantization": self._config.get("quantization"),
            "config_overrides": self._overrides,
            "architecture": self._config.get("model_type"),
            "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "prefill_step_size": self._prefill_step,
            "async_eval": self._async_eval,
            "n_ctx": self.settings.n_ctx,
            "n_threads": None,
            "threads_note": "MLX has no thread-count setting; --threads is not applied",
            "libraries": _mlx_libraries(),
            "metal_available": bool(mx.metal.is_available()),
            "cuda_available": bool(mx.cuda.is_available()) if hasattr(mx, "cuda") else False,
            "gpu_available": bool(mx.is_available(mx.gpu)),
            "bos_token_id": self._bos,
        }

    def reset(self) -> None:
        """Start from position 0: a fresh prompt cache (``make_prompt_cache(model)``)."""
        from mlx_lm.models.cache import make_prompt_cache

        self._cache = make_prompt_cache(self._model)

    def _prefill(self, tokens: Sequence[int]) -> None:
        """Feed ``tokens`` into the cache in ``prefill_step_size`` chunks, evaluated."""
        mx, step = self._mx, self._prefill_step or _FALLBACK_PREFILL_STEP
        for start in range(0, len(tokens), step):
            with mx.stream(self._stream):
                self._model(mx.array([list(tokens[start : start + step])]), cache=self._cache)
                mx.eval([c.state for c in self._cache])
            mx.clear_cache()

    def extend(self, tokens: Sequence[int]) -> None:
        """Append ``tokens`` to the KV cache, chunked as in prefill, fully evaluated."""
        self._prefill(tokens)

    def _next(self, tokens: Any) -> Any:
        """One lazy greedy step (nothing is computed until evaluated).

        Args:
            tokens: token ids, an ``mx.array`` of shape (1, L), or (1,) for the token
                just generated.

        Returns:
            ``argmax`` over the vocabulary of the last position's logits, shape (1,).
        """
        mx = self._mx
        with mx.stream(self._stream):
            if tokens.ndim == 1:
                tokens = tokens[:, None]
            logits = self._model(tokens, cache=self._cache)
            return mx.argmax(logits[:, -1, :], axis=-1)

    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Prefill ``prompt``, then yield ``n_gen`` greedy token ids, each once computed.

        Args:
            prompt: token ids to process after the cached ones (length >= 1); all but
                the last go through chunked prefill, the last one gives the first logits.
            n_gen: tokens to generate (end-of-sequence ignored).

        Yields:
            ``n_gen`` ints in ``[0, n_vocab)``; each is fully computed when yielded (with
            ``async_eval`` the following step is already running).

        Raises:
            ValueError: if ``prompt`` is empty (there would be no logits to start from).
        """
        if not prompt:
            raise ValueError("mlx engine needs at least one prompt token")
        mx = self._mx
        self._prefill(prompt[:-1])
        y = self._next(mx.array([[int(prompt[-1])]]))
        if not self._async_eval:
            for i in range(n_gen):
                if i:
                    y = self._next(y)
                mx.eval(y)
                yield int(y.item())
                if i % 256 == 0:
                    mx.clear_cache()
            return
        mx.async_eval(y)
        for i in range(n_gen):
            following = None
            if i + 1 < n_gen:
                following = self._next(y)
                mx.async_eval(following)
            yield int(y.item())
            if i % 256 == 0:
                mx.clear_cache()
            y = following

    def unload(self) -> None:
        """Drop the model and cache and return MLX's cached buffers."""
        self._model = None
        self._cache = []
        if self._mx is not None:
            self._mx.clear_cache()
