"""PyTorch through Hugging Face transformers (``pip install 'meltbench[torch]'``).

Models: a Hugging Face folder (``hf``), a GGUF file that transformers dequantizes on load
(``gguf``; every tensor becomes ``dtype``), or an architecture built with random weights
(``config``: a ``config.json`` path, or a preset of :data:`meltbench.models.presets.PRESETS`),
seeded with ``settings.seed``.

The timed loop is a manual greedy decode with the model's own cache, not
``model.generate`` (whose logits processors, stopping criteria and streamer would be timed
too): one forward over the prompt with ``logits_to_keep=1`` (only the last position goes
through the LM head, as llama.cpp does), the argmax of those logits is the first token,
then one single-token forward per further token. The cache is a
``transformers.DynamicCache(config=model.config)``: in transformers 5 that one class holds
the K/V tensors of attention layers (sliding-window layers keep only their window) and the
convolution and recurrent states of Mamba/Mamba2 layers, so Transformers, SSMs and hybrids
go through the same loop. The keyword it is passed by is read from the model's
``forward`` signature (:func:`cache_keyword`): ``cache`` since transformers 5.24, before
that ``cache_params`` for Mamba models and ``past_key_values`` for the others; positions
come from the cache length. Each forward runs under ``torch.inference_mode()``.

Known limits (of transformers 5.23 and 5.24, not of this loop):

- Mamba (v1) layers start the prompt's selective scan from a zero state: with
  ``n_depth > 0`` the convolution state of the depth tokens is used but their SSM state is
  not (``mamba_selective_scan`` takes no initial state). The work done is the same, so
  the timing stands; the generated token ids differ from an uncached run. The same holds
  for Jamba (Mamba v1 mixers) and, measured here, Bamba. The Mamba2 mixers of mamba2,
  falcon_h1 and nemotron_h (the presets) and of zamba2 and granitemoehybrid continue
  exactly (tested: extend + forward equals one forward).
- Without the ``mamba_ssm``/``causal_conv1d`` CUDA packages, SSM layers run transformers'
  reference PyTorch implementation (Mamba v1's prompt scan is a Python loop over tokens).
- ``batch``/``ubatch`` are not used: the prompt (and the depth fill) is one forward.

Default dtype: ``float32`` on CPU, ``bfloat16`` on CUDA, ``float16`` on MPS. ``float16``
runs on CPU in torch >= 2.x (slowly), so it is accepted there.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from meltbench.engines.base import Engine, EngineSettings, ModelHandle

__all__ = ["TransformersEngine", "cache_keyword"]

#: model families whose tokenizers prepend BOS by default (see ``bos_token``).
_ADDS_BOS = frozenset(
    {"gemma", "gemma2", "gemma3", "gemma3_text", "llama", "mistral", "mixtral", "phi3"}
)
_DEVICE = re.compile(r"^(cpu|mps|cuda(:[0-9]+)?)$")
_PROFILE_PREFIX = "mb.module::"
#: the names a causal LM's ``forward`` takes its cache by, newest first: ``cache``
#: (transformers >= 5.24, every model; the old names are deprecated aliases there),
#: ``past_key_values`` (attention and hybrid models before 5.24), ``cache_params``
#: (Mamba models before 5.24).
_CACHE_KEYWORDS = ("cache", "past_key_values", "cache_params")


def cache_keyword(model: Any) -> str:
    """The keyword argument by which ``model.forward`` takes its cache.

    The first of ``cache``, ``past_key_values``, ``cache_params`` that the signature of
    ``model.forward`` names. A name it does not list would land in ``**kwargs`` and be
    ignored without an error: every forward would then start from an empty cache.

    Raises:
        TypeError: ``model.forward`` names none of them.
    """
    params = inspect.signature(model.forward).parameters
    for name in _CACHE_KEYWORDS:
        if name in params:
            return name
    raise TypeError(
        f"{type(model).__name__}.forward takes no cache argument "
        f"({', '.join(_CACHE_KEYWORDS)}); this transformers version is not supported"
    )


def _default_dtype(device: str) -> str:
    if device.startswith("cuda"):
        return "bfloat16"
    if device == "mps":
        return "float16"
    return "float32"


class TransformersEngine(Engine):
    """PyTorch eager execution of transformers models (HF folder, GGUF, random weights)."""

    name = "transformers"
    description = "PyTorch + transformers: HF folders, GGUF (dequantized), random weights"
    requires = ("torch", "transformers")
    install_hint = "pip install 'meltbench[torch]'"
    model_formats = ("hf", "gguf", "config")
    dtypes = frozenset({"float32", "bfloat16", "float16"})
    supports_profile = True

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(settings)
        self._torch: Any = None
        self._model: Any = None
        self._cache: Any = None
        self._cache_kw = _CACHE_KEYWORDS[0]
        self._device = settings.device or "cpu"
        self._dtype = settings.dtype or _default_dtype(self._device)
        self._handle: ModelHandle | None = None

    @classmethod
    def check_settings(cls, settings: EngineSettings) -> str | None:
        """The dtype check of :class:`Engine`, plus the device name and its presence.

        ``device`` must be ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; for ``cuda``/``mps``
        torch is imported to check the device exists (``torch.cuda.is_available()`` does
        not create a CUDA context).
        """
        problem = super().check_settings(settings)
        if problem or settings.device is None:
            return problem
        device = settings.device
        if not _DEVICE.match(device):
            return f"engine 'transformers' has no device {device!r}; choose: cpu, cuda, cuda:N, mps"
        if device == "cpu" or cls.missing_requirements():
            return None
        import torch

        if device.startswith("cuda"):
            index = int(device.partition(":")[2] or 0)
            if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                return f"device {device!r} is not available to torch here; use --device cpu"
        elif not torch.backends.mps.is_available():
            return "device 'mps' is not available to torch here; use --device cpu"
        return None

    # -- loading ---------------------------------------------------------------------

    def load(self, model: ModelHandle) -> None:
        """Load or build the model on ``device`` in ``dtype``; create an empty cache.

        Formats: ``hf`` -> ``AutoModelForCausalLM.from_pretrained(path)``; ``gguf`` ->
        ``from_pretrained(parent, gguf_file=name)`` (dequantized; needs ``accelerate``);
        ``config`` -> ``AutoModelForCausalLM.from_config`` with random weights after
        ``torch.manual_seed(settings.seed)``, from ``path`` (a config.json) or, when
        ``path`` is None, the preset ``PRESETS[model.ref]``. Files are read with
        ``local_files_only=True``: the engine never contacts the Hugging Face hub.
        ``load_ms`` includes importing torch and transformers (seconds).

        Raises:
            ValueError: unknown format or preset.
            OSError, ValueError (from transformers): unreadable model files.
            TypeError: a model whose ``forward`` takes no cache (:func:`cache_keyword`).
        """
        import torch
        import transformers

        self._torch = torch
        self._handle = model
        torch.set_num_threads(self.settings.threads)
        dtype = getattr(torch, self._dtype)
        auto = transformers.AutoModelForCausalLM
        if model.format == "hf":
            net = auto.from_pretrained(model.path, dtype=dtype, local_files_only=True)
        elif model.format == "gguf":
            path = Path(model.path or "")
            net = auto.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=dtype, local_files_only=True
            )
        elif model.format == "config":
            config = self._config(model, transformers)
            torch.manual_seed(self.settings.seed)
            net = auto.from_config(config, dtype=dtype)
        else:
            raise ValueError(f"transformers engine cannot load format {model.format!r}")
        net = net.to(self._device).eval()
        self._model = net
        self._cache_kw = cache_keyword(net)
        self.reset()
        self._sync()

    @staticmethod
    def _config(model: ModelHandle, transformers: Any) -> Any:
        """The architecture config of a ``config`` handle (preset or config.json)."""
        if model.path is None:
            from meltbench.models.presets import PRESETS

            if model.ref not in PRESETS:
                raise ValueError(f"no preset {model.ref!r}; choose: {', '.join(sorted(PRESETS))}")
            kwargs = dict(PRESETS[model.ref])
            return transformers.AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
        data = json.loads(Path(model.path).read_text())
        data.pop("quantization_config", None)  # random weights are never quantized
        model_type = data.pop("model_type", None)
        if not model_type:
            raise ValueError(f"{model.path} has no model_type; pass a transformers config.json")
        return transformers.AutoConfig.for_model(model_type, **data)

    @property
    def _text_config(self) -> Any:
        config = self._model.config
        if hasattr(config, "get_text_config"):
            return config.get_text_config(decoder=True)
        return config

    @property
    def n_vocab(self) -> int:
        """``vocab_size`` of the (text) config: the LM head's output width."""
        return int(self._text_config.vocab_size)

    def bos_token(self) -> int | None:
        """``bos_token_id`` of the config for families whose tokenizer prepends it.

        Rule (simple on purpose): for an ``hf`` folder whose ``tokenizer_config.json``
        sets ``add_bos_token``, that flag decides; otherwise BOS is added for the families
        in ``_ADDS_BOS`` (Gemma, Llama, Mistral, Phi-3: SentencePiece/Llama-3 tokenizers
        with a BOS template) and not for the others (Qwen2, Mamba, Falcon-H1, ...).
        """
        config = self._text_config
        bos = getattr(config, "bos_token_id", None)
        if bos is None:
            bos = getattr(self._model.config, "bos_token_id", None)
        if isinstance(bos, list):
            bos = bos[0] if bos else None
        if bos is None:
            return None
        handle = self._handle
        if handle is not None and handle.format == "hf" and handle.path:
            try:
                tok_cfg = json.loads((Path(handle.path) / "tokenizer_config.json").read_text())
            except (OSError, ValueError):
                tok_cfg = {}
            if isinstance(tok_cfg.get("add_bos_token"), bool):
                return int(bos) if tok_cfg["add_bos_token"] else None
        model_type = getattr(config, "model_type", None) or self._model.config.model_type
        return int(bos) if model_type in _ADDS_BOS else None

    def info(self) -> dict[str, Any]:
        """Engine facts: library versions, device, dtype, parameters, build flags.

        ``n_params`` is the sum of ``numel`` over ``model.parameters()`` (tied tensors
        counted once); ``build`` holds torch's CPU capability and backend availability
        (MKL, MKL-DNN/oneDNN, OpenMP) and, on CUDA, the device name and CUDA version.
        """
        import transformers

        torch, net = self._torch, self._model
        backends = torch.backends
        build: dict[str, Any] = {
            "cpu_capability": backends.cpu.get_cpu_capability(),
            "mkl": backends.mkl.is_available(),
            "mkldnn": backends.mkldnn.is_available(),
            "openmp": backends.openmp.is_available(),
            "cuda_available": torch.cuda.is_available(),
            "cuda_version": torch.version.cuda,
        }
        if self._device.startswith("cuda"):
            build["cuda_device"] = torch.cuda.get_device_name(torch.device(self._device))
        config = net.config
        return {
            "name": self.name,
            "library": "transformers",
            "version": transformers.__version__,
            "torch_version": torch.__version__,
            "device": self._device,
            "dtype": str(net.dtype).removeprefix("torch."),
            "n_params": sum(p.numel() for p in net.parameters()),
            "architecture": config.model_type,
            "model_class": type(net).__name__,
            "attn_implementation": getattr(config, "_attn_implementation", None),
            "format": self._handle.format if self._handle else None,
            "n_threads": torch.get_num_threads(),
            "build": build,
        }

    # -- the timed loop --------------------------------------------------------------

    def _sync(self) -> None:
        """Wait for queued GPU work (no-op on CPU)."""
        torch = self._torch
        if self._device.startswith("cuda"):
            torch.cuda.synchronize(self._device)
        elif self._device == "mps":
            torch.mps.synchronize()

    def _forward(self, tokens: Sequence[int]) -> Any:
        """One forward of ``tokens`` (shape ``[1, len(tokens)]``) into the cache.

        Returns:
            the logits of the last position, shape ``[vocab]`` (only that position goes
            through the LM head: ``logits_to_keep=1``).
        """
        torch = self._torch
        with torch.inference_mode():
            ids = torch.tensor([list(tokens)], dtype=torch.long, device=self._device)
            out = self._model(
                input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kw: self._cache}
            )
            return out.logits[0, -1]

    def _next(self, tokens: Sequence[int]) -> int:
        """Forward ``tokens`` and return the greedy next token (``argmax`` of the logits)."""
        logits = self._forward(tokens)
        token = int(logits.argmax())  # .item() waits for the device
        self._sync()
        return token

    def reset(self) -> None:
        """Replace the cache with a fresh, empty ``DynamicCache(config=model.config)``."""
        import transformers

        self._cache = transformers.DynamicCache(config=self._model.config)

    def extend(self, tokens: Sequence[int]) -> None:
        """Forward ``tokens`` into the cache in one pass (no token is produced)."""
        if tokens:
            self._forward(tokens)
        self._sync()

    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Prefill ``prompt`` after the cached tokens, then yield ``n_gen`` greedy tokens.

        Exactly ``n_gen`` tokens: end-of-sequence is not checked.
        """
        token = self._next(prompt)
        yield token
        for _ in range(n_gen - 1):
            token = self._next([token])
            yield token

    # -- profile ---------------------------------------------------------------------

    def profile(self, prompt: Sequence[int], n_gen: int) -> dict[str, Any]:
        """One request (the same loop as :meth:`stream`) under ``torch.profiler``.

        Method: every module of the model gets forward pre/post hooks that open and close
        a ``record_function`` range named after its class (``Gemma3RMSNorm``, ``Linear``,
        ``Gemma3Attention``, ``MambaMixer``...). Each profiled event's *self* time (its
        time minus its children's) is attributed to the innermost module range around it,
        so ``aten::pow``/``aten::rsqrt`` inside ``Gemma3RMSNorm`` count as norm, the
        ``aten::addmm`` of a ``Linear`` as gemm, and ``scaled_dot_product_attention``
        inside ``*Attention`` as attention. A module range's own self time (Python and
        dispatch between its ops) is attributed the same way. The category is
        :func:`meltbench.measure.profile.classify` of the module class; when that gives
        ``other`` (decoder layer residual adds, the MLP's gating multiply, the argmax
        outside any module), the op's own name is classified instead.

        On CUDA the device (kernel) self time of each CPU op is used instead of its CPU
        time, since the GPU's time is what the request waits for.

        Returns:
            ``categories_ms`` (every category of ``CATEGORIES``, milliseconds), ``ops``
            (the 20 largest ``(module, op)`` pairs: ``name`` ``"Module: aten::op"``,
            ``category``, ``ms``, ``count``), ``source``, ``wall_ms`` (the profiled
            request, start to last token, profiler overhead included) and
            ``n_tokens``.
        """
        from torch.profiler import ProfilerActivity, profile, record_function

        from meltbench.measure.profile import CATEGORIES, classify

        torch = self._torch
        on_cuda = self._device.startswith("cuda")
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
        stack: list[Any] = []

        def enter(module: Any, *_: Any) -> None:
            rf = record_function(_PROFILE_PREFIX + type(module).__name__)
            rf.__enter__()
            stack.append(rf)

        def leave(module: Any, *_: Any) -> None:
            if stack:
                stack.pop().__exit__(None, None, None)

        handles = []
        for module in self._model.modules():
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave, always_call=True))
        tokens: list[int] = []
        try:
            with profile(activities=activities) as prof:
                t0 = time.perf_counter_ns()
                tokens = list(self.stream(prompt, n_gen))
                wall_ns = time.perf_counter_ns() - t0
        finally:
            for h in handles:
                h.remove()
            while stack:
                stack.pop().__exit__(None, None, None)

        totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
        for event in prof.events():
            if getattr(event, "device_type", None) is not None and "CPU" not in str(
                event.device_type
            ):
                continue  # kernels are counted through their launching CPU op
            name = event.name
            is_range = name.startswith(_PROFILE_PREFIX)
            if on_cuda:
                us = 0.0 if is_range else float(event.self_device_time_total)
            else:
                us = float(event.self_cpu_time_total)
            module = name[len(_PROFILE_PREFIX) :] if is_range else _enclosing_module(event)
            op = "(python)" if is_range else name
            entry = totals[(module or "", op)]
            entry[0] += us / 1000.0
            entry[1] += 1
        family = type(self._model).__name__.removesuffix("ForCausalLM")
        categories = dict.fromkeys(CATEGORIES, 0.0)
        ops = []
        for (module, op), (ms, count) in totals.items():
            category = classify(_generic_name(module, family)) if module else "other"
            if category == "other" and op != "(python)":
                category = classify(op)
            categories[category] += ms
            label = f"{module}: {op}" if module else op
            ops.append({"name": label, "category": category, "ms": ms, "count": int(count)})
        ops.sort(key=lambda o: -o["ms"])
        device_kind = "CUDA kernel" if on_cuda else "CPU"
        return {
            "categories_ms": categories,
            "ops": ops[:20],
            "source": (
                f"torch.profiler {torch.__version__} ({device_kind} self time per op, "
                "attributed to the innermost module by forward-hook ranges)"
            ),
            "wall_ms": wall_ns / 1e6,
            "n_tokens": len(tokens),
        }

    def unload(self) -> None:
        """Drop the model and cache (and the CUDA caching allocator's blocks)."""
        self._model = None
        self._cache = None
        torch = self._torch
        if torch is not None and self._device.startswith("cuda"):
            torch.cuda.empty_cache()


def _generic_name(module: str, family: str) -> str:
    """A module class name without its model-family prefix, for classification.

    ``MambaRMSNorm`` (family ``Mamba``) -> ``RMSNorm`` (norm, not ssm_scan);
    ``Mamba2Mixer`` -> ``Mixer`` (ssm_scan); ``MambaRMSNormGated`` inside a Mamba2 model
    -> ``RMSNormGated``; ``MambaBlock`` -> ``Block`` (other). A leading ``Mamba``/
    ``Mamba2`` left after the family prefix is removed too (``Zamba2MambaMixer`` ->
    ``Mixer``), since "mamba" alone would classify every SSM-model module as ssm_scan.
    """
    name = module.removeprefix(family) if module != family else module
    stripped = re.sub(r"^Mamba2?(?=[A-Z])", "", name)
    return stripped or module


def _enclosing_module(event: Any) -> str | None:
    """Class name of the innermost module range around a profiler event, or None."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(_PROFILE_PREFIX):
            return parent.name[len(_PROFILE_PREFIX) :]
        parent = parent.cpu_parent
    return None
