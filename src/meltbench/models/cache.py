"""meltbench's cache folder, and facts of a file cached by (path, size, modification time).

Reading a GGUF header with the ``gguf`` package takes seconds for models with a large
vocabulary (about 9 s for Gemma 3's 262,144 tokens on a 2-core machine), so such facts
are cached as JSON under ``$XDG_CACHE_HOME/meltbench/<kind>``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meltbench.models.gguf_info import GGUFInfo, read_gguf_info

__all__ = ["cache_dir", "cached_gguf_info", "file_cached", "source_key"]


def cache_dir() -> Path:
    """meltbench's cache folder: ``$XDG_CACHE_HOME/meltbench`` or ``~/.cache/meltbench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meltbench"


def source_key(path: Path) -> str:
    """16 hex digits identifying a file by path, size and modification time."""
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def file_cached(
    path: Path,
    kind: str,
    compute: Callable[[Path], Any],
    decode: Callable[[dict[str, Any]], Any],
) -> Any:
    """``compute(path)``, cached as JSON under ``cache_dir()/kind`` by (path, size, mtime).

    The value must have ``to_dict()``; ``decode`` turns that dict back into the value. A
    missing or damaged entry is computed again; a read-only cache only costs time.

    Raises:
        whatever ``compute`` raises (e.g. UsageError for a file it cannot read).
    """
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    cache_file = cache_dir() / kind / f"{key}.json"
    try:
        return decode(json.loads(cache_file.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    value = compute(path)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value.to_dict()))
        tmp.replace(cache_file)
    except OSError:
        pass
    return value


def cached_gguf_info(path: Path) -> GGUFInfo:
    """GGUF header facts of ``path``, cached by (path, size, mtime) (see module docstring)."""
    return file_cached(path, "gguf-info", read_gguf_info, lambda d: GGUFInfo(**d))
