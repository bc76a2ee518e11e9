"""Saved reference scores: a model's per-token top-k on a corpus, to compare others with.

File format ``meltbench-reference/1``: a NumPy ``.npz`` archive (zip, deflate,
``numpy.savez_compressed``) of plain numeric arrays, read back with
``numpy.load(path, allow_pickle=False)``, so loading a file never runs code (no pickle,
no object arrays):

- ``tokens``: int32 ``(N,)``, the corpus tokens (no BOS);
- ``positions``: int32 ``(M,)``, corpus index of each scored token, increasing;
- ``nll``: float64 ``(M,)``, nats (float64 so that perplexity is exact);
- ``topk_ids``: int32 ``(M, k)``, the reference's top-k ids, most likely first;
- ``topk_logprobs``: float32 ``(M, k)``, their log-probabilities, nats;
- ``meta``: a 0-d unicode array holding a JSON object: ``format``
  (``"meltbench-reference/1"``), model, engine, n_vocab, ctx, stride, k, bos, method,
  corpus_sha256, corpus_chars, created_at, meltbench_version, ...

Size: ``4 + 4 + 8 + 8k`` bytes per scored token before compression, 272 B for ``k = 32``
(about 80 MB for the ~300k tokens of wikitext-2's test set). Deflate takes that down
to ~150 B per token on synthetic Zipf-like logits (32k vocabulary); real files vary with
the model and corpus. float32 rather than float16 log-probabilities: float16
keeps ~3 significant digits (an absolute error up to ~1e-3 nats at a log-probability of
-2), too coarse next to the KL of good quantizations, for a saving of ``2k`` bytes per
token.

The file is written atomically (a temporary file in the same folder, then
``os.replace``), so an interrupted save never leaves a truncated reference behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.npyio import NpzFile

from meltbench.errors import UsageError

if TYPE_CHECKING:
    from meltbench.accuracy.perplexity import CorpusScores

__all__ = ["FORMAT", "Reference", "check_compatible", "load_reference", "save_reference"]

FORMAT = "meltbench-reference/1"

_ARRAYS = ("tokens", "positions", "nll", "topk_ids", "topk_logprobs")
_DTYPES = {
    "tokens": np.int32,
    "positions": np.int32,
    "nll": np.float64,
    "topk_ids": np.int32,
    "topk_logprobs": np.float32,
}
_FIX = "pass a file written by meltbench eval --save-reference, or recompute it"


@dataclass
class Reference:
    """A reference model's scores on a corpus (shapes as in ``CorpusScores``).

    Attributes:
        tokens: int32 ``(N,)``.
        positions: int32 ``(M,)``.
        nll: float64 ``(M,)``, nats.
        topk_ids: int32 ``(M, k)``, most likely first.
        topk_logprobs: float32 ``(M, k)``, nats.
        meta: JSON-ready facts: ``format``, ``model``, ``engine``, ``n_vocab``, ``ctx``,
            ``stride``, ``k``, ``bos``, ``method``, ``corpus_sha256``, ``corpus_chars``,
            ``created_at``, ``meltbench_version``, ...
        path: the file it was loaded from (None when computed in memory); not saved.
    """

    tokens: Any
    positions: Any
    nll: Any
    topk_ids: Any
    topk_logprobs: Any
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    @classmethod
    def from_scores(cls, scores: CorpusScores, meta: dict[str, Any]) -> Reference:
        """A reference from a model's :class:`CorpusScores` and facts about it.

        ``meta`` (model, engine, corpus_sha256, ...) is merged with ``scores.meta``
        (ctx, stride, k, bos, n_windows, n_vocab, method), which wins where both have a
        non-None value; ``format`` is set, ``created_at`` (UTC, ISO 8601) and
        ``meltbench_version`` are added when missing.
        """
        merged: dict[str, Any] = dict(meta)
        for key, value in scores.meta.items():
            if value is not None or key not in merged:
                merged[key] = value
        merged["format"] = FORMAT
        merged.setdefault(
            "created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        )
        if "meltbench_version" not in merged:
            from meltbench import __version__

            merged["meltbench_version"] = __version__
        return cls(
            tokens=np.asarray(scores.tokens, dtype=np.int32),
            positions=np.asarray(scores.positions, dtype=np.int32),
            nll=np.asarray(scores.nll, dtype=np.float64),
            topk_ids=np.asarray(scores.topk_ids, dtype=np.int32),
            topk_logprobs=np.asarray(scores.topk_logprobs, dtype=np.float32),
            meta=merged,
        )

    @property
    def n_scored(self) -> int:
        """Number of scored tokens ``M``."""
        return len(self.nll)

    @property
    def k(self) -> int:
        """Top-k kept per position."""
        return int(np.asarray(self.topk_ids).shape[1])

    @property
    def perplexity(self) -> float:
        """The reference model's perplexity ``exp(mean(nll))``."""
        from meltbench.accuracy.perplexity import perplexity

        return perplexity(self.nll)


def _shape_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays' shapes or dtypes, or None."""
    for name in _ARRAYS:
        a = arrays[name]
        want = np.dtype(_DTYPES[name]).kind
        kinds = "iu" if want == "i" else "f"
        if a.dtype.kind not in kinds:
            return f"array {name} has dtype {a.dtype}"
    tokens, positions, nll = arrays["tokens"], arrays["positions"], arrays["nll"]
    ids, lps = arrays["topk_ids"], arrays["topk_logprobs"]
    if tokens.ndim != 1 or positions.ndim != 1 or nll.ndim != 1:
        return "tokens, positions and nll must be 1-D"
    m = positions.shape[0]
    if nll.shape != (m,):
        return f"nll has shape {nll.shape}, positions ({m},)"
    if ids.ndim != 2 or ids.shape[0] != m or ids.shape[1] < 1 or lps.shape != ids.shape:
        return f"topk_ids {ids.shape} and topk_logprobs {lps.shape} must both be ({m}, k)"
    if m and (positions[0] < 0 or positions[-1] >= tokens.shape[0]):
        return "positions fall outside the tokens"
    if m > 1 and not np.all(np.diff(positions.astype(np.int64)) > 0):
        return "positions are not increasing"
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def save_reference(ref: Reference, path: str | Path) -> None:
    """Write ``ref`` to ``path`` (format ``meltbench-reference/1``, see the module doc).

    The file is written to ``path`` exactly (no suffix added; ``.npz`` is the
    convention), atomically; missing parent folders are created.

    Raises:
        ValueError: inconsistent array shapes, or meta that is not JSON-serializable.
        UsageError: the file cannot be written (one line, with the OS reason).
    """
    arrays = {name: np.asarray(getattr(ref, name), dtype=_DTYPES[name]) for name in _ARRAYS}
    problem = _shape_problem(arrays)
    if problem is not None:
        raise ValueError(f"cannot save an inconsistent reference: {problem}")
    meta = dict(ref.meta)
    meta["format"] = FORMAT
    meta_json = json.dumps(meta, sort_keys=True, default=_json_default, allow_nan=True)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(meta_json, dtype=np.str_), **arrays)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"cannot write the reference to {target}: {reason}; pass --save-reference "
            "with a writable path"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def load_reference(path: str | Path) -> Reference:
    """Read a reference written by :func:`save_reference` (never unpickles anything).

    Raises:
        UsageError: (one line, with the fix) the file is missing, is not an ``.npz``
            archive, is truncated or corrupt, holds object arrays (pickled data), misses
            an array, has wrong shapes or dtypes, or has another format version.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"reference file not found: {p}; {_FIX}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except Exception as exc:  # ValueError (would need pickle), OSError, EOFError, ...
        raise UsageError(
            f"{p} is not a reference .npz archive ({_one_line(exc)}); {_FIX}"
        ) from None
    if not isinstance(loaded, NpzFile):
        raise UsageError(f"{p} is a single .npy array, not a reference .npz archive; {_FIX}")
    arrays: dict[str, np.ndarray] = {}
    try:
        missing = [n for n in (*_ARRAYS, "meta") if n not in loaded.files]
        if missing:
            raise UsageError(f"{p} is not a meltbench reference (no {', '.join(missing)}); {_FIX}")
        for name in (*_ARRAYS, "meta"):
            try:
                arrays[name] = loaded[name]
            except ValueError as exc:
                if "object arrays" in str(exc).lower() or "pickle" in str(exc).lower():
                    raise UsageError(
                        f"{p} holds Python objects (array {name}), refused for safety; {_FIX}"
                    ) from None
                raise
    except UsageError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, zlib.error, OSError, ...
        raise UsageError(
            f"{p} is a truncated or corrupt reference ({_one_line(exc)}); {_FIX}"
        ) from None
    finally:
        loaded.close()

    meta_arr = arrays.pop("meta")
    if meta_arr.ndim != 0 or meta_arr.dtype.kind != "U":
        raise UsageError(f"{p}: its meta is not a JSON string; {_FIX}")
    try:
        meta = json.loads(str(meta_arr[()]))
    except ValueError:
        raise UsageError(f"{p}: its meta is not valid JSON; {_FIX}") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{p}: its meta is not a JSON object; {_FIX}")
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise UsageError(
            f"{p} has format {fmt!r} but this meltbench reads {FORMAT!r}; recompute the "
            "reference with meltbench eval --save-reference"
        )
    problem = _shape_problem(arrays)
    if problem is not None:
        raise UsageError(f"{p} is not a consistent reference ({problem}); {_FIX}")
    return Reference(
        **{name: np.asarray(arrays[name], dtype=_DTYPES[name]) for name in _ARRAYS},
        meta=meta,
        path=str(p),
    )


def check_compatible(
    ref: Reference,
    *,
    n_vocab: int | None,
    ctx: int,
    stride: int,
    corpus_sha256: str | None,
) -> None:
    """Check that ``ref`` can be compared with a model scored with these settings.

    A value of None (or a key missing from ``ref.meta``) skips that check.

    Raises:
        UsageError: (one line, naming the mismatch and the fix) another vocabulary size,
            another corpus (or ``--max-chars``), or another ``--ctx``/``--stride``.
    """
    meta = ref.meta
    where = f" ({ref.path})" if ref.path else ""
    ref_vocab = meta.get("n_vocab")
    if n_vocab is not None and ref_vocab is not None and int(ref_vocab) != int(n_vocab):
        raise UsageError(
            f"the reference{where} has a vocabulary of {ref_vocab} tokens and this model "
            f"{n_vocab}: KL and top-1 agreement need models with the same vocabulary and "
            "tokenizer"
        )
    ref_sha = meta.get("corpus_sha256")
    if corpus_sha256 and ref_sha and ref_sha != corpus_sha256:
        raise UsageError(
            f"the reference{where} was computed on another corpus text (sha256 "
            f"{str(ref_sha)[:12]}..., this one {corpus_sha256[:12]}...); pass the same "
            "--corpus and --max-chars, or recompute the reference"
        )
    ref_ctx, ref_stride = meta.get("ctx"), meta.get("stride")
    if (ref_ctx is not None and int(ref_ctx) != int(ctx)) or (
        ref_stride is not None and int(ref_stride) != int(stride)
    ):
        raise UsageError(
            f"the reference{where} was computed with --ctx {ref_ctx} --stride {ref_stride}, "
            f"not --ctx {ctx} --stride {stride}; pass the same or recompute it"
        )
