"""What a decoder model moves through memory: weights read per token and the KV cache.

Two figures come from a GGUF file's header alone (no weights are loaded):

- **Weights read per decoded token.** Decoding one token multiplies the activations by
  every weight matrix once, so every tensor is read in full, except the token embedding
  table: its one row for the current token is gathered (``ggml_get_rows``). When the
  model has no ``output.weight`` tensor, the embedding table doubles as the output
  projection (tied embeddings, e.g. Gemma) and is read in full after all.
- **KV cache bytes.** llama.cpp allocates, per attention layer ``il``, a K tensor of
  ``n_embd_head_k * n_head_kv(il)`` elements of ``type_k`` per cell and a V tensor of
  ``n_embd_head_v * n_head_kv(il)`` elements of ``type_v`` per cell
  (``src/llama-kv-cache.cpp``; rows sized with ``ggml_row_size``). Models with
  interleaved sliding-window attention get two caches (``src/llama-kv-cache-iswa.cpp``):
  the full-attention layers hold ``n_ctx`` cells, the sliding-window layers
  ``GGML_PAD(min(n_ctx, n_swa * n_seq + n_ubatch), 256)`` cells, or ``n_ctx`` too when
  ``swa_full`` is set (llama.cpp's default).

Which layers use the sliding window is not always in the file: llama.cpp hard-codes a
pattern per architecture (``hparams.set_swa_pattern(n)`` in ``src/llama-model.cpp``:
layer ``il`` is sliding-window when ``il % n < n - 1``). :data:`SWA_PATTERNS` holds the
patterns of the architectures we know; a file's own
``<arch>.attention.sliding_window_pattern`` array wins when present.

:func:`read_footprint` caches what it read on disk, by (resolved path, size, mtime), under
``$XDG_CACHE_HOME/meltbench/footprint`` (as :func:`meltbench.models.cache.cached_gguf_info`
does): ``gguf.GGUFReader`` parses every metadata array, and Gemma 3's 262,144-entry
vocabulary alone takes it 12 s on a 2-core machine, on every run.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SWA_PATTERNS",
    "AttentionShape",
    "ModelFootprint",
    "ggml_row_bytes",
    "kv_bytes_read_per_token",
    "kv_cache_bytes",
    "kv_cells",
    "read_footprint",
]

#: llama.cpp's hard-coded sliding-window patterns (``set_swa_pattern(n)``, src/llama-model.cpp):
#: of every ``n`` layers the first ``n - 1`` use the window, the last full attention.
SWA_PATTERNS: dict[str, int] = {"gemma2": 2, "gemma3": 6, "cohere2": 4}

#: ``GGML_PAD`` of the sliding-window cache size (src/llama-kv-cache-iswa.cpp).
SWA_PAD = 256


def ggml_row_bytes(type_name: str, n_elements: int) -> int:
    """Bytes of ``n_elements`` values of a ggml type (``ggml_row_size``).

    ``type_name`` is the ggml name in any case (``f16``, ``Q8_0``, ``q4_0``); block types
    count whole blocks, e.g. ``q8_0``: 34 bytes per 32 values (``gguf.GGML_QUANT_SIZES``).

    Raises:
        ValueError: unknown type name, or ``n_elements`` not a multiple of the block size.
    """
    import gguf

    try:
        qtype = gguf.GGMLQuantizationType[type_name.upper()]
    except KeyError:
        raise ValueError(f"unknown ggml type {type_name!r}") from None
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if n_elements % block:
        raise ValueError(f"{n_elements} values of {type_name} are not whole {block}-value blocks")
    return n_elements // block * size


@dataclass(frozen=True)
class AttentionShape:
    """Per-layer attention dimensions that size the KV cache.

    Attributes:
        n_layer: transformer blocks.
        n_head_kv: KV heads of each layer (0 for a layer without attention).
        head_dim_k, head_dim_v: ``n_embd_head_k`` / ``n_embd_head_v``, elements.
        n_swa: sliding-window length, tokens (0 = no sliding window).
        swa_layers: whether each layer uses the sliding window.
    """

    n_layer: int
    n_head_kv: tuple[int, ...]
    head_dim_k: int
    head_dim_v: int
    n_swa: int = 0
    swa_layers: tuple[bool, ...] = ()

    def is_swa(self, il: int) -> bool:
        """Whether layer ``il`` attends over the sliding window only."""
        return bool(self.n_swa) and il < len(self.swa_layers) and self.swa_layers[il]

    def cell_bytes(self, il: int, type_k: str = "f16", type_v: str = "f16") -> int:
        """K + V bytes of one cache cell in layer ``il``."""
        heads = self.n_head_kv[il]
        return ggml_row_bytes(type_k, self.head_dim_k * heads) + ggml_row_bytes(
            type_v, self.head_dim_v * heads
        )


def kv_cells(
    shape: AttentionShape,
    n_ctx: int,
    *,
    swa_full: bool = True,
    n_seq: int = 1,
    n_ubatch: int = 512,
) -> tuple[int, int]:
    """Cells of the full-attention and of the sliding-window cache.

    Returns:
        ``(cells_base, cells_swa)``; ``cells_swa`` is 0 for a model without a window.
        The formula is llama.cpp's (module docstring).
    """
    if not shape.n_swa or not any(shape.swa_layers):
        return n_ctx, 0
    if swa_full:
        return n_ctx, n_ctx
    want = min(n_ctx, shape.n_swa * n_seq + n_ubatch)
    return n_ctx, -(-want // SWA_PAD) * SWA_PAD


def kv_cache_bytes(
    shape: AttentionShape,
    n_ctx: int,
    *,
    type_k: str = "f16",
    type_v: str = "f16",
    swa_full: bool = True,
    n_seq: int = 1,
    n_ubatch: int = 512,
) -> int:
    """Bytes llama.cpp allocates for the KV cache of a context of ``n_ctx`` cells.

    ``sum over layers of cells(layer) x (K row + V row)``, where ``cells`` is
    :func:`kv_cells`'s base or sliding-window count (llama.cpp ``src/llama-kv-cache.cpp``
    and ``src/llama-kv-cache-iswa.cpp``).

    Raises:
        ValueError: an unknown ggml type name.
    """
    base, swa = kv_cells(shape, n_ctx, swa_full=swa_full, n_seq=n_seq, n_ubatch=n_ubatch)
    total = 0
    for il in range(shape.n_layer):
        if not shape.n_head_kv[il]:
            continue
        cells = swa if shape.is_swa(il) else base
        total += cells * shape.cell_bytes(il, type_k, type_v)
    return total


def kv_bytes_read_per_token(
    shape: AttentionShape, n_past: float, *, type_k: str = "f16", type_v: str = "f16"
) -> float:
    """KV cache bytes attention reads to decode one token with ``n_past`` tokens cached.

    Every full-attention layer reads the K and V of all ``n_past + 1`` positions (the
    cached ones and the new token); a sliding-window layer at most ``n_swa`` of them.
    This counts the attended positions only; llama.cpp reads a view padded to 256 cells
    and masks the rest, so its traffic can be a little higher.

    Raises:
        ValueError: an unknown ggml type name.
    """
    total = 0.0
    for il in range(shape.n_layer):
        if not shape.n_head_kv[il]:
            continue
        positions = n_past + 1
        if shape.is_swa(il):
            positions = min(positions, shape.n_swa)
        total += positions * shape.cell_bytes(il, type_k, type_v)
    return total


@dataclass(frozen=True)
class ModelFootprint:
    """Bytes a GGUF model moves per decoded token, from its header.

    Attributes:
        architecture: ``general.architecture``.
        weights_bytes: all tensor data, bytes.
        weights_read_per_token_bytes: weights read to decode one token (module docstring).
        token_embd_bytes: the token embedding table, bytes.
        tied_embeddings: True when the embedding table is also the output projection.
        attention: the KV cache dimensions, or None when the header lacks them.
    """

    architecture: str | None
    weights_bytes: int
    weights_read_per_token_bytes: int
    token_embd_bytes: int
    tied_embeddings: bool
    attention: AttentionShape | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFootprint:
        """The footprint :meth:`to_dict` gave (lists back to tuples).

        Raises:
            KeyError, TypeError, ValueError: not such a dict.
        """
        shape = data["attention"]
        attention = None
        if shape is not None:
            attention = AttentionShape(
                n_layer=int(shape["n_layer"]),
                n_head_kv=tuple(int(h) for h in shape["n_head_kv"]),
                head_dim_k=int(shape["head_dim_k"]),
                head_dim_v=int(shape["head_dim_v"]),
                n_swa=int(shape["n_swa"]),
                swa_layers=tuple(bool(v) for v in shape["swa_layers"]),
            )
        arch = data["architecture"]
        return cls(
            architecture=None if arch is None else str(arch),
            weights_bytes=int(data["weights_bytes"]),
            weights_read_per_token_bytes=int(data["weights_read_per_token_bytes"]),
            token_embd_bytes=int(data["token_embd_bytes"]),
            tied_embeddings=bool(data["tied_embeddings"]),
            attention=attention,
        )


def _swa_layers(arch: str, n_layer: int, pattern_field: Any) -> tuple[bool, ...]:
    if pattern_field is not None:
        if isinstance(pattern_field, list):
            return tuple(bool(v) for v in pattern_field[:n_layer])
        n = int(pattern_field)
        return tuple(n == 0 or il % n < n - 1 for il in range(n_layer))
    n = SWA_PATTERNS.get(arch)
    if n is None:
        return ()
    return tuple(il % n < n - 1 for il in range(n_layer))


def read_footprint(path: str | os.PathLike[str]) -> ModelFootprint:
    """Weights and KV dimensions of a GGUF file (header only), cached on disk by
    (resolved path, size, mtime) (see the module docstring).

    Raises:
        UsageError: the file is not a readable GGUF (see
            :func:`meltbench.models.gguf_info.check_gguf_path`).
    """
    from meltbench.models.cache import file_cached
    from meltbench.models.gguf_info import check_gguf_path

    file = check_gguf_path(path).resolve()
    return file_cached(file, "footprint", _read_footprint, ModelFootprint.from_dict)


def _read_footprint(file: Path) -> ModelFootprint:
    """:func:`read_footprint` without the cache: parse the header with ``gguf``."""
    import gguf

    reader = gguf.GGUFReader(str(file), "r")

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    tensors = {t.name: t for t in reader.tensors}
    weights = sum(int(t.n_bytes) for t in reader.tensors)
    embd = tensors.get("token_embd.weight")
    embd_bytes = int(embd.n_bytes) if embd is not None else 0
    tied = embd is not None and "output.weight" not in tensors
    per_token = weights
    if embd is not None and not tied:
        rows = int(embd.shape[-1]) if len(embd.shape) > 1 else 1
        per_token = weights - embd_bytes + embd_bytes // max(rows, 1)

    attention = None
    n_layer = field(f"{arch}.block_count") if arch else None
    n_head = field(f"{arch}.attention.head_count") if arch else None
    n_embd = field(f"{arch}.embedding_length") if arch else None
    if n_layer is not None and n_head is not None:
        n_layer = int(n_layer)
        heads = n_head if isinstance(n_head, list) else [n_head] * n_layer
        kv = field(f"{arch}.attention.head_count_kv")
        kv_heads = heads if kv is None else (kv if isinstance(kv, list) else [kv] * n_layer)
        first_head = next((int(h) for h in heads if h), 0)
        default_dim = int(n_embd) // first_head if n_embd and first_head else 0
        head_k = field(f"{arch}.attention.key_length")
        head_v = field(f"{arch}.attention.value_length")
        n_swa = field(f"{arch}.attention.sliding_window")
        pattern = field(f"{arch}.attention.sliding_window_pattern")
        attention = AttentionShape(
            n_layer=n_layer,
            n_head_kv=tuple(int(h) for h in kv_heads),
            head_dim_k=int(head_k) if head_k is not None else default_dim,
            head_dim_v=int(head_v) if head_v is not None else default_dim,
            n_swa=int(n_swa) if n_swa else 0,
            swa_layers=_swa_layers(str(arch), n_layer, pattern) if n_swa else (),
        )
    return ModelFootprint(
        architecture=str(arch) if arch is not None else None,
        weights_bytes=weights,
        weights_read_per_token_bytes=per_token,
        token_embd_bytes=embd_bytes,
        tied_embeddings=tied,
        attention=attention,
    )
