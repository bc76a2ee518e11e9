"""How far a candidate model's next-token distributions are from a reference's.

Both models score the same corpus with the same windows (:mod:`.perplexity`). Two ways:

- **Lockstep (exact).** With a reference *model*, each window is scored by the
  reference and then by the candidate, and the full-vocabulary
  ``KL(P_ref || Q_cand) = sum_v p_v (log p_v - log q_v)`` is computed per position from
  both full log-softmax rows (float64), as ``llama-perplexity --kl-divergence`` does.
  llama.cpp stores the reference's logits in a file first (uint16-quantized
  log-probabilities, ``2 x V`` bytes per position: 0.5 MiB per position for Gemma 3's
  262,144-token vocabulary, ~150 GB for a 300k-token corpus); lockstep keeps one
  window of the reference's rows in memory instead. These are ``kl_mean_nats``,
  ``kl_median_nats``, ``kl_p99_nats``, ``kl_max_nats``.
- **Saved reference (a bound).** A reference file keeps only the reference's top-k ids
  and log-probabilities at each position; the candidate returns its log-probabilities
  of those same ids (``ref_logprobs``). That gives ``kl_topk_bound_mean_nats``, a lower
  bound, never reported as the KL (an independent check found the top-32 bound 29%
  below the full KL for Q4_0 of Gemma 3 270M, with the reference's top-32 holding 85.5%
  of its probability on average), with ``ref_topk_mass_mean`` saying how tight it is.

From the top-k:

- **Top-k KL bound**: ``KL(P_ref || Q_cand)`` per position, in nats, of the two
  distributions *coarsened* to ``k + 1`` outcomes: the reference's top-k tokens, and
  one "rest" bucket holding every other token. By the data-processing inequality
  (Cover & Thomas, *Elements of Information Theory*, 2nd ed., Thm 2.8.1, applied to the
  deterministic map token -> bucket; equivalently the log-sum inequality, Thm 2.7.1) the
  coarsened KL is a **lower bound** of the full-vocabulary KL, and it is **equal** to it
  when the reference puts all its mass on its top-k (then the rest bucket is empty for
  P, and the candidate's mass there contributes nothing). The less mass the reference
  leaves outside its top-k, the tighter the bound.
- **Top-1 agreement**: the fraction of positions where both models' most likely token
  (argmax, ties broken toward the lower id) is the same.

The summary statistics of the per-position KL (median, p99) use
:func:`meltbench.measure.stats.percentile` (Hyndman & Fan type 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from meltbench.errors import UsageError
from meltbench.measure.stats import percentile

if TYPE_CHECKING:
    from meltbench.accuracy.perplexity import CorpusScores
    from meltbench.accuracy.reference import Reference

__all__ = ["Comparison", "check_same_tokens", "compare", "top1_agreement", "topk_kl"]

# Rest-bucket masses are clipped to at least this, so log() is finite.
_TINY = 1e-30

_SAME_TOKENIZER = "KL and top-1 agreement need models with the same vocabulary and tokenizer"


def _logsumexp_rows(a: np.ndarray) -> np.ndarray:
    """Row-wise ``log(sum(exp(a)))`` of a float64 ``(n, k)`` array (-inf rows give -inf)."""
    m = np.max(a, axis=1)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return m_safe + np.log(np.sum(np.exp(a - m_safe[:, None]), axis=1))


def _log_rest(logsum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mass outside the top-k, ``1 - exp(logsum)``, clipped to ``[TINY, 1]``, and its log.

    ``-expm1`` keeps full relative precision when the top-k holds nearly all the mass.
    """
    rest = np.clip(-np.expm1(np.minimum(logsum, 0.0)), _TINY, 1.0)
    return rest, np.log(rest)


def topk_kl(ref_topk_logprobs: Any, cand_logprobs_at_ref_ids: Any) -> np.ndarray:
    """Per-position ``KL(P_ref || Q_cand)`` over the reference's top-k plus a rest bucket.

    ``sum_i p_i (log p_i - log q_i) + p_rest (log p_rest - log q_rest)`` with
    ``p_rest = 1 - sum_i p_i`` and ``q_rest = 1 - sum_i q_i`` (computed as
    ``-expm1(logsumexp(.))``, clipped to >= 1e-30); a term whose ``p`` is 0, or a rest
    bucket with ``p_rest <= 1e-30``, contributes 0 (``0 log 0 = 0``). This is a lower
    bound of the full-vocabulary KL, equal to it when ``p_rest = 0`` (see the module
    docstring). Negative values, which only float rounding of the inputs can produce
    (the exact value is >= 0, Gibbs' inequality), are clipped to 0. A token the reference
    gives mass and the candidate gives none (``q_i = 0``) makes the KL ``inf``.

    Args:
        ref_topk_logprobs: float array ``(n, k)``, the reference's top-k
            log-probabilities (nats), any order.
        cand_logprobs_at_ref_ids: float array ``(n, k)``, the candidate's
            log-probabilities of the same ids, same order.

    Returns:
        float64 array ``(n,)``, nats; exactly 0 where the two inputs are equal.

    Raises:
        ValueError: the shapes differ or are not 2-D.
    """
    lp = np.asarray(ref_topk_logprobs, dtype=np.float64)
    lq = np.asarray(cand_logprobs_at_ref_ids, dtype=np.float64)
    if lp.ndim != 2 or lp.shape != lq.shape:
        raise ValueError(
            f"topk_kl needs two (n, k) arrays of the same shape, got {lp.shape} and {lq.shape}"
        )
    if lp.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        diff = lp - lq  # inf - inf (p = q = 0) is NaN, masked below
    terms = np.where(p > 0.0, p * diff, 0.0)
    p_rest, log_p_rest = _log_rest(_logsumexp_rows(lp))
    _q_rest, log_q_rest = _log_rest(_logsumexp_rows(lq))
    rest_term = np.where(p_rest > _TINY, p_rest * (log_p_rest - log_q_rest), 0.0)
    kl = np.sum(terms, axis=1) + rest_term
    return np.maximum(kl, 0.0)


def top1_agreement(ref_top1: Any, cand_top1: Any) -> float:
    """Fraction (0..1) of positions where both models' most likely token is the same.

    Args:
        ref_top1, cand_top1: int arrays ``(n,)`` of argmax token ids.

    Raises:
        ValueError: different shapes, or no positions.
    """
    a = np.asarray(ref_top1).ravel()
    b = np.asarray(cand_top1).ravel()
    if a.shape != b.shape:
        raise ValueError(f"top1_agreement needs arrays of the same length, got {a.size}, {b.size}")
    if a.size == 0:
        raise ValueError("top-1 agreement of no positions is undefined")
    return float(np.count_nonzero(a == b)) / a.size


@dataclass
class Comparison:
    """A candidate model against a reference on the same corpus and windows.

    Attributes:
        n_tokens: positions compared (scored tokens ``M``).
        ppl: the candidate's perplexity.
        ppl_ref: the reference's perplexity.
        ppl_ratio: ``ppl / ppl_ref``.
        kl_mean_nats, kl_median_nats, kl_p99_nats, kl_max_nats: per-position
            full-vocabulary KL divergence, nats; None unless scored in lockstep.
        kl_topk_bound_mean_nats: mean of the per-position top-k bound
            (:func:`topk_kl`), nats: a lower bound of ``kl_mean_nats``.
        ref_topk_mass_mean: mean probability (0..1) in the reference's top-k.
        top1_agreement: fraction 0..1 of positions with the same argmax.
        k: the reference's top-k (resolution of the bound).
    """

    n_tokens: int
    ppl: float
    ppl_ref: float
    ppl_ratio: float
    kl_mean_nats: float | None
    kl_median_nats: float | None
    kl_p99_nats: float | None
    kl_max_nats: float | None
    kl_topk_bound_mean_nats: float
    ref_topk_mass_mean: float
    top1_agreement: float
    k: int

    @property
    def kl_is_full(self) -> bool:
        """True when the full-vocabulary KL was computed (lockstep)."""
        return self.kl_mean_nats is not None

    def to_metrics(self) -> dict[str, float]:
        """The metric names stored with a run: ``perplexity``, ``perplexity_ref``,
        ``ppl_ratio``, ``kl_mean_nats``, ``kl_median_nats``, ``kl_p99_nats``,
        ``kl_max_nats`` (only when computed in lockstep: never the bound under the
        KL's name), ``kl_topk_bound_mean_nats``, ``ref_topk_mass_mean``,
        ``top1_agreement``."""
        out = {
            "perplexity": float(self.ppl),
            "perplexity_ref": float(self.ppl_ref),
            "ppl_ratio": float(self.ppl_ratio),
        }
        for name in ("kl_mean_nats", "kl_median_nats", "kl_p99_nats", "kl_max_nats"):
            value = getattr(self, name)
            if value is not None:
                out[name] = float(value)
        out["kl_topk_bound_mean_nats"] = float(self.kl_topk_bound_mean_nats)
        out["ref_topk_mass_mean"] = float(self.ref_topk_mass_mean)
        out["top1_agreement"] = float(self.top1_agreement)
        return out


def _first_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, str, str]:
    """Index of the first difference of two 1-D int arrays, and the two values there."""
    n = min(a.size, b.size)
    neq = np.flatnonzero(a[:n] != b[:n])
    i = int(neq[0]) if neq.size else n
    av = str(int(a[i])) if i < a.size else "end of text"
    bv = str(int(b[i])) if i < b.size else "end of text"
    return i, av, bv


def check_same_tokens(ref_tokens: Any, cand_tokens: Any) -> None:
    """Both models must tokenize the corpus identically (int arrays ``(N,)``).

    Raises:
        UsageError: they differ; the message gives the first differing token.
    """
    a = np.asarray(ref_tokens).ravel()
    b = np.asarray(cand_tokens).ravel()
    if a.shape != b.shape or not np.array_equal(a, b):
        i, x, y = _first_difference(a, b)
        raise UsageError(
            "the candidate tokenizes the corpus differently from the reference "
            f"(first difference at token {i}: {x} vs {y}): {_SAME_TOKENIZER}"
        )


def compare(reference: Reference, cand: CorpusScores) -> Comparison:
    """Compare a candidate's scores with a reference's (same corpus, same windows).

    ``cand`` must have been scored with ``ref_topk_ids=reference.topk_ids`` (so that
    ``cand.ref_logprobs`` holds the candidate's log-probabilities of the reference's
    top-k ids), or in lockstep with the reference model (``score_corpus(...,
    reference=...)``, and ``reference`` made from ``cand.reference_scores``): then
    ``cand.kl`` holds the full-vocabulary KL per position and the ``kl_*`` statistics
    are set.

    Raises:
        UsageError: the candidate tokenizes the corpus differently, scores other
            positions (other ``--ctx``/``--stride``/BOS), or has another vocabulary size.
        ValueError: ``cand`` was scored without the reference's ids.
    """
    check_same_tokens(reference.tokens, cand.tokens)
    ref_vocab = reference.meta.get("n_vocab")
    cand_vocab = cand.meta.get("n_vocab")
    if ref_vocab is not None and cand_vocab is not None and int(ref_vocab) != int(cand_vocab):
        raise UsageError(
            f"the candidate has a vocabulary of {cand_vocab} tokens and the reference "
            f"{ref_vocab}: {_SAME_TOKENIZER}"
        )
    ref_pos = np.asarray(reference.positions).ravel()
    cand_pos = np.asarray(cand.positions).ravel()
    if ref_pos.shape != cand_pos.shape or not np.array_equal(ref_pos, cand_pos):
        r, c = reference.meta, cand.meta
        raise UsageError(
            "the candidate scored other positions than the reference (reference: "
            f"--ctx {r.get('ctx')} --stride {r.get('stride')} bos {r.get('bos')}; candidate: "
            f"--ctx {c.get('ctx')} --stride {c.get('stride')} bos {c.get('bos')}): "
            "pass the reference's --ctx and --stride, with models that add BOS alike"
        )
    ref_lp = np.asarray(reference.topk_logprobs)
    if cand.ref_logprobs is None:
        raise ValueError(
            "the candidate was scored without the reference's ids: call score_corpus(..., "
            "ref_topk_ids=reference.topk_ids)"
        )
    cand_lp = np.asarray(cand.ref_logprobs)
    if cand_lp.shape != ref_lp.shape:
        raise ValueError(
            f"candidate ref_logprobs have shape {cand_lp.shape}, the reference's top-k "
            f"{ref_lp.shape}: score with ref_topk_ids=reference.topk_ids"
        )
    n = int(ref_lp.shape[0])
    if n == 0:
        raise UsageError("nothing to compare: the reference scores no tokens")
    bound = topk_kl(ref_lp, cand_lp).tolist()
    mass = np.exp(_logsumexp_rows(ref_lp.astype(np.float64))).tolist()
    full: dict[str, float | None] = dict.fromkeys(
        ("kl_mean_nats", "kl_median_nats", "kl_p99_nats", "kl_max_nats")
    )
    if cand.kl is not None:
        kl = np.asarray(cand.kl, dtype=np.float64)
        if kl.shape != (n,):
            raise ValueError(f"candidate kl has shape {kl.shape}, expected ({n},)")
        kl_list = kl.tolist()
        full = {
            "kl_mean_nats": math.fsum(kl_list) / n,
            "kl_median_nats": percentile(kl_list, 50.0),
            "kl_p99_nats": percentile(kl_list, 99.0),
            "kl_max_nats": float(np.max(kl)),
        }
    ppl = float(cand.perplexity)
    ppl_ref = float(reference.perplexity)
    return Comparison(
        n_tokens=n,
        ppl=ppl,
        ppl_ref=ppl_ref,
        ppl_ratio=ppl / ppl_ref,
        **full,
        kl_topk_bound_mean_nats=math.fsum(bound) / n,
        ref_topk_mass_mean=math.fsum(mass) / n,
        top1_agreement=top1_agreement(
            np.asarray(reference.topk_ids)[:, 0], np.asarray(cand.topk_ids)[:, 0]
        ),
        k=int(ref_lp.shape[1]),
    )
