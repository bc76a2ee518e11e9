"""Model facts read from a GGUF file's header, with the ``gguf`` package (llama.cpp's own).

GGUF layout: magic ``b"GGUF"``, version, tensor count, metadata key/values, tensor infos,
then aligned tensor data (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
The parameter count is the sum of the element counts of all tensors; the quantization
type is ``general.file_type`` (llama.cpp's ``llama_ftype``) by its llama.cpp name, e.g.
``Q4_K_M``; when a file lacks it, the tensor type holding the most elements is used.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError

__all__ = ["GGUF_MAGIC", "GGUFInfo", "check_gguf_path", "read_gguf_info"]

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about a model.

    Attributes:
        path: absolute path of the file.
        size_bytes: file size, bytes.
        name: ``general.name`` (or the file stem).
        architecture: ``general.architecture`` (e.g. ``gemma3``).
        quant: quantization type, llama.cpp naming (``Q4_K_M``, ``Q8_0``, ``F16``).
        n_params: total parameters (sum of tensor elements).
        n_tensors: tensor count.
        n_ctx_train: training context length, tokens (``<arch>.context_length``), or None.
        n_layer: block count (``<arch>.block_count``), or None.
        n_embd: embedding width (``<arch>.embedding_length``), or None.
        gguf_version: GGUF format version.
    """

    path: str
    size_bytes: int
    name: str
    architecture: str | None
    quant: str | None
    n_params: int
    n_tensors: int
    n_ctx_train: int | None
    n_layer: int | None
    n_embd: int | None
    gguf_version: int | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-ready)."""
        return asdict(self)


def check_gguf_path(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` names a readable GGUF file (by its magic bytes).

    Returns:
        the absolute path.

    Raises:
        UsageError: missing path, a directory, unreadable, or not a GGUF file.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(
            f"model file not found: {p}; pass an existing .gguf path or a registered alias"
        )
    if p.is_dir():
        raise UsageError(f"model path is a directory: {p}; pass the .gguf file inside it")
    try:
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UsageError(f"cannot read model file {p}: {exc.strerror}; check permissions") from exc
    if magic != GGUF_MAGIC:
        raise UsageError(
            f"not a GGUF file: {p} (magic bytes {magic!r}, expected b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py or pass a .gguf file"
        )
    return p.resolve()


def _field_value(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.contents()
    return value


def _quant_name(reader: Any) -> str | None:
    import gguf

    file_type = _field_value(reader, "general.file_type")
    if file_type is not None:
        try:
            name = gguf.LlamaFileType(int(file_type)).name
        except ValueError:
            name = None
        if name:
            for prefix in ("MOSTLY_", "ALL_"):
                if name.startswith(prefix):
                    return name[len(prefix) :]
            return name
    counts: Counter[str] = Counter()
    for tensor in reader.tensors:
        counts[tensor.tensor_type.name] += int(tensor.n_elements)
    return counts.most_common(1)[0][0] if counts else None


def read_gguf_info(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read model facts from a GGUF header.

    Raises:
        UsageError: if the path is not a GGUF file, or the file is truncated or corrupt
            (its header cannot be parsed, or tensor data extends past the end of file).
    """
    p = check_gguf_path(path)
    import gguf

    size = p.stat().st_size
    try:
        reader = gguf.GGUFReader(str(p), "r")
    except Exception as exc:  # the reader raises assorted errors on damaged files
        raise UsageError(
            f"GGUF file is truncated or corrupt: {p} ({type(exc).__name__}: {exc}); "
            "download or convert it again"
        ) from exc
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise UsageError(
            f"GGUF file is truncated: {p} has {size} bytes but its tensors need {end}; "
            "download or convert it again"
        )
    arch = _field_value(reader, "general.architecture")
    name = _field_value(reader, "general.name") or p.stem

    def arch_int(key: str) -> int | None:
        value = _field_value(reader, f"{arch}.{key}") if arch else None
        return int(value) if value is not None else None

    version = _field_value(reader, "GGUF.version")
    return GGUFInfo(
        path=str(p),
        size_bytes=size,
        name=str(name),
        architecture=str(arch) if arch is not None else None,
        quant=_quant_name(reader),
        n_params=sum(int(t.n_elements) for t in reader.tensors),
        n_tensors=len(reader.tensors),
        n_ctx_train=arch_int("context_length"),
        n_layer=arch_int("block_count"),
        n_embd=arch_int("embedding_length"),
        gguf_version=int(version) if version is not None else None,
    )
