"""Reduce rows of logits to :class:`~meltbench.accuracy.base.RowScores` (engine-independent).

Every engine's :class:`~meltbench.accuracy.base.LogitsSource` calls :func:`reduce_rows`
on each batch of logits it produces, so the full ``(positions x vocabulary)`` matrix is
never kept: what survives a row is its ``nll``, its top-k and the log-probabilities of
the reference's top-k ids.

Numerics: the log-softmax is computed stably in float64 as ``x - logsumexp(x)`` with
``logsumexp(x) = max(x) + log(sum(exp(x - max(x))))`` (float16/bfloat16/float32 logits
convert to float64 exactly). The top-k is chosen on the logits themselves, in their own
dtype (the same order as the log-probabilities, without the rounding of the
subtraction), most likely first; equal logits are ordered by token id, lower id first,
and when equal logits straddle the k-th place the lower ids are the ones kept, so the
result is deterministic whatever the engine or the partition algorithm.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meltbench.accuracy.base import RowScores, concat_rows

__all__ = ["WindowRows", "log_softmax", "reduce_rows"]

# Rows per chunk are chosen so that one float64 temporary holds about this many elements
# (8 Mi elements = 64 MiB): 32 rows of Gemma 3's 262,144-entry vocabulary.
_CHUNK_ELEMENTS = 1 << 23


def log_softmax(logits: Any) -> np.ndarray:
    """Log-softmax of each row, float64, nats.

    Args:
        logits: float array ``(n, V)`` (or ``(V,)``).

    Returns:
        float64 array of the same shape: ``x - logsumexp(x)`` per row.
    """
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x, axis=-1, keepdims=True)
    lse = m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))
    return x - lse


def _topk_rows(x: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` largest entries of each row of ``x`` (n, V), largest first.

    Ties: lower id first, and lower ids win a tie across the k-th place.
    """
    n, v = x.shape
    if k >= v:
        ids = np.broadcast_to(np.arange(v, dtype=np.int64), (n, v))
    else:
        # argpartition puts the k largest last (in any order, ties arbitrary).
        ids = np.argpartition(x, v - k, axis=1)[:, v - k :]
        vals = np.take_along_axis(x, ids, axis=1)
        kth = vals.min(axis=1)
        n_equal_kept = (vals == kth[:, None]).sum(axis=1)
        n_equal_all = (x == kth[:, None]).sum(axis=1)
        ambiguous = np.flatnonzero(n_equal_all > n_equal_kept)
        if ambiguous.size:
            for r in ambiguous:
                row = x[r]
                greater = np.flatnonzero(row > kth[r])
                equal = np.flatnonzero(row == kth[r])[: k - greater.size]
                ids[r] = np.concatenate([greater, equal])
    vals = np.take_along_axis(x, ids, axis=1)
    # lexsort: last key is primary -> descending value, then ascending id.
    order = np.lexsort((ids, -vals), axis=-1)
    return np.take_along_axis(ids, order, axis=1)


def _as_float(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 or float64 without losing precision (float16/bfloat16 -> float32)."""
    if x.dtype in (np.float32, np.float64):
        return x
    if x.dtype.kind in "fV" and x.dtype.itemsize <= 4:  # float16, bfloat16 (ml_dtypes)
        return x.astype(np.float32)
    return x.astype(np.float64)


def reduce_rows(
    logits: Any,
    next_tokens: Any,
    k: int,
    ref_ids: Any = None,
    *,
    keep_logprobs: bool = False,
    ref_full: Any = None,
) -> RowScores:
    """Reduce ``n`` rows of logits to their nll, top-k and reference log-probabilities.

    Args:
        logits: float array ``(n, V)``, any float dtype (float16, bfloat16 through
            ``torch``'s ``.float().numpy()``, float32, float64): row ``j`` is the
            distribution predicting ``next_tokens[j]``.
        next_tokens: int array ``(n,)``, the token that actually follows each row.
        k: how many top tokens to keep, ``>= 1``; clipped to ``V``.
        ref_ids: optional int array ``(n, k_ref)`` of ids whose log-probabilities to
            gather (a reference model's top-k at the same positions).
        keep_logprobs: also return every row's full log-softmax (float32 ``(n, V)``,
            ``n x V x 4`` bytes: the reference side of a lockstep comparison).
        ref_full: optional float32/float64 ``(n, V)``: a reference model's full
            log-probabilities at the same positions; each row's full-vocabulary
            ``KL(P_ref || Q) = sum_v p_v (log p_v - log q_v)`` (nats; terms with
            ``p_v = 0`` are 0) is returned as ``kl``. Computed in float64.

    Returns:
        :class:`RowScores` with ``nll`` float64 ``(n,)`` (nats, ``-logprob[next]``),
        ``topk_ids`` int32 ``(n, min(k, V))`` most likely first (ties: lower id first),
        ``topk_logprobs`` float32 ``(n, min(k, V))`` (nats, descending),
        ``ref_logprobs`` float32 ``(n, k_ref)`` or None, ``logprobs`` (with
        ``keep_logprobs``) and ``kl`` float64 ``(n,)`` (with ``ref_full``) or None.

    Raises:
        ValueError: wrong shapes, ``k < 1``, a token id outside ``[0, V)``, or a row
            whose log-sum-exp is not finite (NaN or +inf logits, or all -inf).
    """
    x_all = np.asarray(logits)
    if x_all.ndim != 2:
        raise ValueError(f"logits must be a 2-D (n, n_vocab) array, got shape {x_all.shape}")
    n, v = x_all.shape
    if v < 1:
        raise ValueError("logits have an empty vocabulary axis")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(int(k), v)
    nxt = np.asarray(next_tokens)
    if nxt.shape != (n,):
        raise ValueError(f"next_tokens must have shape ({n},), got {nxt.shape}")
    if n and (nxt.min() < 0 or nxt.max() >= v):
        raise ValueError(f"next_tokens must be token ids in [0, {v}), got an id outside")
    nxt = nxt.astype(np.int64, copy=False)
    ref = None
    if ref_ids is not None:
        ref = np.asarray(ref_ids)
        if ref.ndim != 2 or ref.shape[0] != n:
            raise ValueError(f"ref_ids must have shape ({n}, k_ref), got {ref.shape}")
        if ref.size and (ref.min() < 0 or ref.max() >= v):
            raise ValueError(
                f"ref_ids must be token ids in [0, {v}), got an id outside "
                "(the reference has a larger vocabulary)"
            )
        ref = ref.astype(np.int64, copy=False)
    full = None
    if ref_full is not None:
        full = np.asarray(ref_full)
        if full.shape != (n, v):
            raise ValueError(
                f"ref_full must have shape ({n}, {v}), got {full.shape}: the reference "
                "has another vocabulary size"
            )

    nll = np.empty(n, dtype=np.float64)
    logprobs = np.empty((n, v), dtype=np.float32) if keep_logprobs else None
    kl = None if full is None else np.empty(n, dtype=np.float64)
    topk_ids = np.empty((n, k), dtype=np.int32)
    topk_logprobs = np.empty((n, k), dtype=np.float32)
    ref_logprobs = None if ref is None else np.empty(ref.shape, dtype=np.float32)

    chunk = max(1, _CHUNK_ELEMENTS // v)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        x = _as_float(np.asarray(x_all[lo:hi]))
        m = np.max(x, axis=1).astype(np.float64)
        with np.errstate(invalid="ignore"):
            z = np.subtract(x, m[:, None], dtype=np.float64)  # the float64 temporary
            np.exp(z, out=z)
            lse = m + np.log(np.sum(z, axis=1))
        del z
        bad = np.flatnonzero(~np.isfinite(lse))
        if bad.size:
            raise ValueError(
                f"logits row {lo + int(bad[0])} is not finite (NaN or +inf logits, or all -inf)"
            )
        rows = np.arange(hi - lo)
        nll[lo:hi] = lse - x[rows, nxt[lo:hi]].astype(np.float64)
        ids = _topk_rows(x, k)
        topk_ids[lo:hi] = ids
        top = np.take_along_axis(x, ids, axis=1).astype(np.float64)
        topk_logprobs[lo:hi] = top - lse[:, None]
        if ref is not None and ref_logprobs is not None:
            got = np.take_along_axis(x, ref[lo:hi], axis=1).astype(np.float64)
            ref_logprobs[lo:hi] = got - lse[:, None]
        if logprobs is not None or kl is not None:
            lq = np.subtract(x, lse[:, None], dtype=np.float64)  # this model's log q
            if logprobs is not None:
                logprobs[lo:hi] = lq
            if kl is not None:
                kl[lo:hi] = _full_kl(np.asarray(full[lo:hi], dtype=np.float64), lq)
            del lq
    return RowScores(
        nll=nll,
        topk_ids=topk_ids,
        topk_logprobs=topk_logprobs,
        ref_logprobs=ref_logprobs,
        logprobs=logprobs,
        kl=kl,
    )


def _full_kl(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """Row-wise ``sum_v exp(lp) (lp - lq)`` of float64 ``(n, V)`` log-probabilities.

    Terms with ``p_v = 0`` (``lp = -inf``) are 0 (``0 log 0 = 0``); a ``q_v = 0`` where
    ``p_v > 0`` gives ``+inf``, as the definition does. Rounding can make a row of two
    nearly equal distributions slightly negative (about -1e-16): it is clipped to 0,
    the lower limit of a divergence.
    """
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        terms = p * (lp - lq)
    terms[p == 0.0] = 0.0
    return np.maximum(np.sum(terms, axis=1), 0.0)


class WindowRows:
    """A window's scored rows, reduced batch by batch (what every source's ``score`` does).

    Args:
        tokens: int array of the window (``tokens[j + 1]`` follows row ``j``).
        first: the first scored position.
        k: top-k kept per row.
        n_vocab: vocabulary size.
        ref: checked ``ref_ids`` (:func:`check_ref_ids`) or None.
        full: checked ``ref_full`` (:func:`check_ref_full`) or None.
        keep_logprobs: keep each row's full log-softmax.
    """

    def __init__(
        self,
        tokens: Any,
        first: int,
        k: int,
        n_vocab: int,
        ref: Any = None,
        full: Any = None,
        keep_logprobs: bool = False,
    ) -> None:
        self._tokens, self._first, self._k, self._n_vocab = tokens, first, k, n_vocab
        self._ref, self._full, self._keep = ref, full, keep_logprobs
        self._parts: list[RowScores] = []

    def add(self, logits: Any, lo: int, hi: int) -> None:
        """Reduce the logits ``(hi - lo, n_vocab)`` of positions ``[lo, hi)``."""
        a, b = lo - self._first, hi - self._first
        self._parts.append(
            reduce_rows(
                logits,
                self._tokens[lo + 1 : hi + 1],
                self._k,
                None if self._ref is None else self._ref[a:b],
                keep_logprobs=self._keep,
                ref_full=None if self._full is None else self._full[a:b],
            )
        )

    def result(self) -> RowScores:
        """Every row added so far, in order (:func:`concat_rows`)."""
        return concat_rows(
            self._parts,
            self._k,
            self._n_vocab,
            None if self._ref is None else self._ref.shape[1],
            keep_logprobs=self._keep,
            kl=self._full is not None,
        )
