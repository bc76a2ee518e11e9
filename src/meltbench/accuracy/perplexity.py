"""Perplexity of a model on a text corpus, by the strided sliding window.

Method: the Hugging Face guide "Perplexity of fixed-length models"
(https://huggingface.co/docs/transformers/perplexity). The corpus is tokenized once, as
one sequence of ``N`` tokens. Windows of ``L`` corpus tokens start at ``0, stride,
2*stride, ...`` (the last one ends at the end of the corpus and may be shorter); each
window scores only the tokens that no earlier window scored (the guide's
``trg_len = end_loc - prev_end_loc``), so every token is predicted exactly once, with at
least ``L - stride`` tokens of context once the first window is passed. With
``stride = L`` the windows are disjoint (fastest, least context); a smaller stride gives
each prediction more context at the cost of ``L / stride`` times the compute.

Difference from llama.cpp's ``llama-perplexity`` (``tools/perplexity/perplexity.cpp``,
``perplexity()``): it cuts the corpus into non-overlapping chunks of ``n_ctx`` tokens
(dropping the tail that does not fill a chunk, and needing at least ``2 * n_ctx``
tokens), evaluates each chunk from an empty cache with BOS written over the chunk's first
token when the model adds BOS, and scores only the second half of each chunk
(``first = n_ctx / 2``: ``n_ctx - 1 - n_ctx / 2`` predictions per chunk). Every scored
token thus has at least ``n_ctx / 2`` tokens of context, but about half of the corpus is
never scored. Its numbers are therefore not identical to ours for the same ``n_ctx``;
a ``--stride`` of half the window gives comparable context per prediction, and here every
token is scored.

BOS: when the model has a BOS token (``source.bos_token()`` is not None), each window is
``[BOS] + tokens[start:end]``, so it holds ``L = ctx - 1`` corpus tokens, and the first
corpus token is scored too, predicted from BOS alone. Without BOS a window holds
``L = ctx`` corpus tokens and the first corpus token is never scored (nothing predicts
it). Either way a window is at most ``ctx`` tokens long.

Units: ``nll`` in nats (natural logarithm); perplexity ``= exp(mean nll)``,
dimensionless.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meltbench.accuracy.base import LogitsSource, RowScores
from meltbench.errors import UsageError

__all__ = [
    "METHOD",
    "CorpusScores",
    "WindowPlan",
    "corpus_sha256",
    "load_corpus",
    "perplexity",
    "plan_windows",
    "score_corpus",
]

METHOD = "hf-strided-sliding-window"


@dataclass(frozen=True)
class WindowPlan:
    """One window of the sliding-window evaluation, in corpus token indices.

    Attributes:
        start: first corpus token of the window's content.
        end: one past the last corpus token of the content (the window is
            ``[BOS] + tokens[start:end]`` with BOS, ``tokens[start:end]`` without).
        score_from: first corpus index whose prediction is scored in this window; the
            window scores corpus tokens ``score_from .. end - 1``. ``start <= score_from``
            with BOS, ``start < score_from`` without (a token needs a predecessor).
    """

    start: int
    end: int
    score_from: int

    @property
    def n_scored(self) -> int:
        """Corpus tokens scored by this window (``end - score_from``)."""
        return self.end - self.score_from

    def first(self, bos: bool) -> int:
        """The window position whose next-token prediction is ``tokens[score_from]``.

        This is the ``first`` argument of :meth:`LogitsSource.score`:
        ``(score_from - start) + (1 if bos else 0) - 1``.
        """
        return (self.score_from - self.start) + (1 if bos else 0) - 1


def plan_windows(n_tokens: int, ctx: int, stride: int, bos: bool) -> list[WindowPlan]:
    """The windows of the HF strided sliding-window evaluation.

    Windows hold ``L = ctx - (1 if bos else 0)`` corpus tokens and start at
    ``0, stride, 2*stride, ...``; the last one is the first that reaches the end of the
    corpus (it may be shorter than ``L``). Window ``w`` scores the corpus tokens from the
    end of window ``w - 1`` to its own end; the first window scores from index 0 with
    BOS, from index 1 without. So every corpus index from ``0 if bos else 1`` to
    ``n_tokens - 1`` is scored exactly once. A corpus with nothing to score
    (``n_tokens < 1`` with BOS, ``< 2`` without) gives no windows.

    With BOS and ``stride = L`` the windows are disjoint and each window's first token is
    scored with BOS as its only context, as the corpus's first token always is; with
    ``stride < L`` every later window's scored tokens have ``>= L - stride`` corpus
    tokens of context. The result is the same windows as the guide's loop (with
    ``max_length = L``), which never scores a window's first token, and so loses one
    token per window when ``stride = L``.

    Args:
        n_tokens: corpus length, tokens.
        ctx: window length including BOS, tokens (``--ctx``), ``>= 2``.
        stride: how far a window starts after the previous one, tokens (``--stride``),
            ``1 <= stride <= ctx - 1``. With BOS ``ctx - 1 = L``; without BOS the window's
            first token has no predecessor, so a stride of ``L = ctx`` would leave one
            token per window unscored and is refused.

    Raises:
        ValueError: ``ctx < 2``, ``stride`` out of range, ``n_tokens < 0``.
    """
    if ctx < 2:
        raise ValueError(f"--ctx must be >= 2 tokens (got {ctx})")
    if not 1 <= stride <= ctx - 1:
        raise ValueError(f"--stride must be between 1 and ctx - 1 = {ctx - 1} (got {stride})")
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0 (got {n_tokens})")
    length = ctx - (1 if bos else 0)
    first_scored = 0 if bos else 1
    if n_tokens <= first_scored:
        return []
    plans: list[WindowPlan] = []
    prev_end = first_scored
    for start in range(0, n_tokens, stride):
        end = min(start + length, n_tokens)
        plans.append(WindowPlan(start=start, end=end, score_from=prev_end))
        prev_end = end
        if end == n_tokens:
            break
    return plans


def perplexity(nll: Any) -> float:
    """Perplexity ``exp(mean(nll))`` of per-token negative log-likelihoods (nats).

    Raises:
        ValueError: ``nll`` is empty.
    """
    values = np.asarray(nll, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("perplexity of no tokens is undefined")
    return math.exp(math.fsum(values.tolist()) / values.size)


@dataclass
class CorpusScores:
    """Per-token scores of one model on one corpus (only the reduced rows: O(M*k)).

    Attributes:
        tokens: int32 ``(N,)``, the corpus tokens (no BOS).
        positions: int32 ``(M,)``, the corpus index of each predicted token, increasing
            (``0 .. N-1`` with BOS, ``1 .. N-1`` without).
        nll: float64 ``(M,)``, nats: ``-log p(tokens[positions[j]] | context)``.
        topk_ids: int32 ``(M, k)``, the model's most likely tokens at each position,
            most likely first.
        topk_logprobs: float32 ``(M, k)``, their log-probabilities, nats, descending.
        ref_logprobs: float32 ``(M, k_ref)``, log-probabilities of a reference's top-k
            ids (None when scored without a reference).
        kl: float64 ``(M,)``, nats: full-vocabulary ``KL(P_ref || Q)`` per position,
            when scored in lockstep with a reference model (``score_corpus(...,
            reference=...)``); else None.
        reference_scores: the reference model's own scores from that lockstep pass
            (its ``kl`` and ``ref_logprobs`` None); else None.
        meta: ``ctx``, ``stride``, ``k`` (after clipping to the vocabulary), ``bos``,
            ``bos_token``, ``n_windows``, ``n_vocab``, ``method``
            (``"hf-strided-sliding-window"``).
    """

    tokens: Any
    positions: Any
    nll: Any
    topk_ids: Any
    topk_logprobs: Any
    ref_logprobs: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    kl: Any = None
    reference_scores: CorpusScores | None = None

    @property
    def n_scored(self) -> int:
        """Number of scored tokens ``M``."""
        return len(self.nll)

    @property
    def perplexity(self) -> float:
        """``exp(mean(nll))``, dimensionless."""
        return perplexity(self.nll)


def score_corpus(
    source: LogitsSource,
    tokens: Any,
    *,
    ctx: int,
    stride: int,
    k: int = 32,
    ref_topk_ids: Any = None,
    reference: LogitsSource | None = None,
    on_window: Callable[[int, int, int], None] | None = None,
) -> CorpusScores:
    """Score every token of ``tokens`` with ``source`` by the strided sliding window.

    For each window of :func:`plan_windows` this calls
    ``source.score(window, first, k, ref_ids=...)`` with
    ``window = [bos] + tokens[start:end]`` (``tokens[start:end]`` without BOS) and
    ``first = (score_from - start) + (1 if bos else 0) - 1``, the window position whose
    next token is ``tokens[score_from]``; it returns ``end - score_from`` rows.

    Args:
        source: the model.
        tokens: int sequence ``(N,)``, the corpus tokenized by ``source`` without BOS.
        ctx: window length including BOS (``<= source.n_ctx`` when that is set).
        stride: window step (see :func:`plan_windows`).
        k: top-k kept per position (clipped to the vocabulary by the source).
        ref_topk_ids: optional int array ``(M, k_ref)``, a reference's top-k ids aligned
            with the positions this call scores (a :class:`Reference`'s ``topk_ids``);
            their log-probabilities come back as ``ref_logprobs``.
        reference: a reference model to score *in lockstep*: each window is scored by
            the reference first, keeping its full log-probabilities (``rows x V x 4``
            bytes, one window at a time), then by ``source`` against them, which gives
            the exact full-vocabulary KL per position (``kl``) as
            ``llama-perplexity --kl-divergence`` computes it, without storing the
            reference's logits. The reference's top-k ids give ``ref_logprobs`` (the
            top-k bound) as well, and its own scores come back as
            ``reference_scores``. Excludes ``ref_topk_ids``.
        on_window: progress, called after each window as
            ``on_window(windows_done, n_windows, tokens_scored_so_far)``;
            ``windows_done`` counts from 1 and equals ``n_windows`` at the end.

    Returns:
        :class:`CorpusScores` (``ref_logprobs`` None without ``ref_topk_ids``).

    Raises:
        UsageError: bad ``ctx``/``stride``/``k``, a corpus with nothing to score, or
            ``ref_topk_ids`` whose row count differs from the positions scored here
            (the reference tokenized the corpus differently or with another BOS rule),
            or a lockstep reference with another BOS token or vocabulary size.
        RuntimeError: the source returned rows of the wrong count or shape.
    """
    toks = np.asarray(tokens, dtype=np.int64).ravel().astype(np.int32)
    bos_id = source.bos_token()
    bos = bos_id is not None
    if reference is not None:
        if ref_topk_ids is not None:
            raise ValueError("pass either ref_topk_ids or a lockstep reference, not both")
        _check_lockstep(source, reference)
    if k < 1:
        raise UsageError(f"--top-k must be >= 1 (got {k})")
    if source.n_ctx and ctx > source.n_ctx:
        raise UsageError(
            f"--ctx {ctx} is longer than the model's context of {source.n_ctx} tokens; "
            "pass a smaller --ctx"
        )
    try:
        plans = plan_windows(len(toks), ctx, stride, bos)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not plans:
        raise UsageError(
            f"the corpus is {len(toks)} token(s) long: nothing to score; give a longer --corpus"
        )
    n_expected = sum(p.n_scored for p in plans)

    ref = None
    if ref_topk_ids is not None:
        ref = np.asarray(ref_topk_ids)
        if ref.ndim != 2 or ref.shape[0] != n_expected:
            raise UsageError(
                f"the reference has {ref.shape[0] if ref.ndim else 0} scored positions and "
                f"this model {n_expected}: the reference tokenizes the corpus differently "
                "(or adds BOS differently); KL and top-1 agreement need models with the same "
                "vocabulary and tokenizer"
            )

    nll_parts: list[np.ndarray] = []
    ids_parts: list[np.ndarray] = []
    lp_parts: list[np.ndarray] = []
    ref_parts: list[np.ndarray] = []
    kl_parts: list[np.ndarray] = []
    own_parts: list[RowScores] = []  # the lockstep reference's rows
    k_out: int | None = None
    done = 0
    for i, plan in enumerate(plans):
        window = ([int(bos_id)] if bos else []) + toks[plan.start : plan.end].tolist()
        first = plan.first(bos)
        n_rows = plan.n_scored
        if reference is not None:
            own = reference.score(window, first, k, keep_logprobs=True)
            if own.logprobs is None or np.shape(own.logprobs) != (n_rows, source.n_vocab):
                raise RuntimeError(
                    f"{reference.engine or type(reference).__name__} returned no full "
                    f"log-probabilities of shape ({n_rows}, {source.n_vocab}) for window {i}"
                )
            rows = source.score(window, first, k, ref_ids=own.topk_ids, ref_full=own.logprobs)
            own.logprobs = None  # n_rows x V floats: free before the next window
            own_parts.append(own)
            if rows.kl is None or np.shape(rows.kl) != (n_rows,):
                raise RuntimeError(
                    f"{source.engine or type(source).__name__} ignored ref_full in window {i}"
                )
            kl_parts.append(np.asarray(rows.kl, dtype=np.float64))
            ref = own.topk_ids  # checked below like given ids
            ref_rows = ref
        else:
            ref_rows = None if ref is None else ref[done : done + n_rows]
            rows = source.score(window, first, k, ref_ids=ref_rows)
        nll = np.asarray(rows.nll, dtype=np.float64)
        ids = np.asarray(rows.topk_ids)
        lps = np.asarray(rows.topk_logprobs)
        if nll.shape != (n_rows,) or ids.ndim != 2 or ids.shape[0] != n_rows:
            raise RuntimeError(
                f"{source.engine or type(source).__name__} returned {len(nll)} rows for "
                f"window {i} (positions {first}..{len(window) - 2}), expected {n_rows}"
            )
        if lps.shape != ids.shape or (k_out is not None and ids.shape[1] != k_out):
            raise RuntimeError(
                f"{source.engine or type(source).__name__} returned top-k arrays of shapes "
                f"{ids.shape} and {lps.shape} for window {i}"
            )
        k_out = ids.shape[1]
        nll_parts.append(nll)
        ids_parts.append(ids.astype(np.int32, copy=False))
        lp_parts.append(lps.astype(np.float32, copy=False))
        if ref is not None:
            if rows.ref_logprobs is None:
                raise RuntimeError(
                    f"{source.engine or type(source).__name__} ignored ref_ids in window {i}"
                )
            rlp = np.asarray(rows.ref_logprobs, dtype=np.float32)
            if rlp.shape != (n_rows, np.shape(ref_rows)[1]):
                raise RuntimeError(
                    f"{source.engine or type(source).__name__} returned ref_logprobs of shape "
                    f"{rlp.shape} for window {i}, expected {(n_rows, np.shape(ref_rows)[1])}"
                )
            ref_parts.append(rlp)
        done += n_rows
        if on_window is not None:
            on_window(i + 1, len(plans), done)

    positions = np.concatenate(
        [np.arange(p.score_from, p.end, dtype=np.int32) for p in plans]
    ).astype(np.int32)
    meta: dict[str, Any] = {
        "method": METHOD,
        "ctx": int(ctx),
        "stride": int(stride),
        "k": int(k_out or 0),
        "bos": bos,
        "bos_token": None if bos_id is None else int(bos_id),
        "n_windows": len(plans),
        "n_vocab": int(source.n_vocab) if source.n_vocab else None,
    }
    reference_scores = None
    if reference is not None:
        reference_scores = CorpusScores(
            tokens=toks,
            positions=positions,
            nll=np.concatenate([np.asarray(r.nll, dtype=np.float64) for r in own_parts]),
            topk_ids=np.concatenate([np.asarray(r.topk_ids, dtype=np.int32) for r in own_parts]),
            topk_logprobs=np.concatenate(
                [np.asarray(r.topk_logprobs, dtype=np.float32) for r in own_parts]
            ),
            meta={**meta, "n_vocab": int(reference.n_vocab) if reference.n_vocab else None},
        )
    return CorpusScores(
        tokens=toks,
        positions=positions,
        nll=np.concatenate(nll_parts),
        topk_ids=np.concatenate(ids_parts),
        topk_logprobs=np.concatenate(lp_parts),
        ref_logprobs=np.concatenate(ref_parts) if ref is not None else None,
        meta=meta,
        kl=np.concatenate(kl_parts) if reference is not None else None,
        reference_scores=reference_scores,
    )


def _check_lockstep(source: LogitsSource, reference: LogitsSource) -> None:
    """A lockstep reference must see the same windows and vocabulary as ``source``."""
    same = "KL divergence needs models with the same vocabulary and tokenizer"
    if reference.bos_token() != source.bos_token():
        raise UsageError(
            f"the reference's BOS token is {reference.bos_token()} and the model's "
            f"{source.bos_token()}: {same}"
        )
    if reference.n_vocab != source.n_vocab:
        raise UsageError(
            f"the reference has a vocabulary of {reference.n_vocab} tokens and the model "
            f"{source.n_vocab}: {same}"
        )


def load_corpus(path: str | Path, max_chars: int | None = None) -> str:
    """Read a UTF-8 text corpus, optionally only its first ``max_chars`` characters.

    Raises:
        UsageError: missing or unreadable file, not UTF-8, empty (or only whitespace),
            or ``max_chars < 1``.
    """
    p = Path(path)
    if max_chars is not None and max_chars < 1:
        raise UsageError(f"--max-chars must be >= 1 (got {max_chars})")
    if not p.exists():
        raise UsageError(f"corpus file not found: {p}; pass --corpus with a UTF-8 text file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"corpus {p} is not UTF-8 text (byte {exc.start}); pass --corpus with a UTF-8 text file"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"cannot read corpus {p}: {reason}; pass --corpus with a readable UTF-8 text file"
        ) from None
    if max_chars is not None:
        text = text[:max_chars]
    if not text.strip():
        raise UsageError(f"corpus {p} is empty; pass --corpus with a non-empty UTF-8 text file")
    return text


def corpus_sha256(text: str) -> str:
    """SHA-256 (hex) of the corpus text as scored (after ``max_chars``), UTF-8 encoded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
