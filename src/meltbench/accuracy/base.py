"""The contract between accuracy measurements and engines: a *logits source*.

A :class:`LogitsSource` tokenizes text and, for a window of tokens, scores the model's
next-token distributions at the positions asked for. It never returns the full
``(tokens x vocabulary)`` matrix to the caller (Gemma 3's 262,144-entry vocabulary makes
that 1 MiB per position); it reduces each row to :class:`RowScores` as the rows are
produced, so memory is bounded by one batch of logits whatever the corpus length.

Definitions (natural logarithms throughout; "nats"):

- ``logprobs = log_softmax(logits)`` over the whole vocabulary;
- ``nll[i]``: ``-logprobs[i][tokens[i + 1]]``, the negative log-likelihood of the token
  that actually follows position ``i``;
- ``topk_ids[i]``, ``topk_logprobs[i]``: the ``k`` most likely next tokens, most likely
  first (``topk_ids[i][0]`` is the argmax);
- ``ref_logprobs[i]``: the log-probabilities of the ids given in ``ref_ids[i]`` (a
  reference model's top-k), for KL divergence against that reference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LogitsSource",
    "RowScores",
    "check_ref_full",
    "check_ref_ids",
    "check_settings",
    "check_window",
    "concat_rows",
]


@dataclass
class RowScores:
    """Per-position reductions of next-token distributions (numpy arrays).

    Attributes:
        nll: shape ``(n,)``, float64, nats.
        topk_ids: shape ``(n, k)``, int32, most likely first.
        topk_logprobs: shape ``(n, k)``, float32, nats (<= 0), descending.
        ref_logprobs: shape ``(n, k_ref)``, float32: log-probabilities of the
            reference's top-k ids at each position; None when no ids were given.
        logprobs: shape ``(n, V)``, float32: the full log-softmax of each row, when
            asked for (``keep_logprobs``); else None.
        kl: shape ``(n,)``, float64, nats: full-vocabulary ``KL(P_ref || Q)`` against a
            reference's full log-probabilities (``ref_full``); else None.
    """

    nll: Any
    topk_ids: Any
    topk_logprobs: Any
    ref_logprobs: Any = None
    logprobs: Any = None
    kl: Any = None

    def __len__(self) -> int:
        return len(self.nll)


class LogitsSource(ABC):
    """A model that scores next-token distributions (one per engine that supports it).

    Attributes:
        engine: engine name (``llama.cpp``, ``transformers``).
        n_vocab: vocabulary size (rows of logits have this length).
        n_ctx: the longest window :meth:`score` accepts, tokens.
    """

    engine: str = ""
    n_vocab: int = 0
    n_ctx: int = 0

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS (the caller adds BOS per window)."""

    @abstractmethod
    def bos_token(self) -> int | None:
        """The BOS id the model expects at the start of a sequence, or None."""

    @abstractmethod
    def score(
        self,
        tokens: Sequence[int],
        first: int,
        k: int,
        ref_ids: Any = None,
        *,
        keep_logprobs: bool = False,
        ref_full: Any = None,
    ) -> RowScores:
        """Score positions ``first .. len(tokens) - 2`` of one window.

        The window is evaluated from an empty KV cache. Row ``j`` of the result is
        position ``first + j``: the distribution after ``tokens[: first + j + 1]``,
        whose ``nll`` is that of ``tokens[first + j + 1]``.

        Args:
            tokens: the window, ``len(tokens) <= n_ctx``.
            first: first position scored (0 <= first <= len(tokens) - 2).
            k: how many top tokens to keep per position.
            ref_ids: optional int array ``(len(tokens) - 1 - first, k_ref)`` of ids
                whose log-probabilities to return (the reference's top-k).
            keep_logprobs, ref_full: passed to
                :func:`~meltbench.accuracy.scoring.reduce_rows` for each batch of rows
                (``ref_full`` sliced to the batch): the full log-probabilities, and the
                full-vocabulary KL against a reference's.

        Raises:
            ValueError: window longer than ``n_ctx`` or ``first`` out of range.
        """

    def describe(self) -> dict[str, Any]:
        """Facts stored with the scores (engine, model path, dtype, n_vocab, n_ctx)."""
        return {"engine": self.engine, "n_vocab": self.n_vocab, "n_ctx": self.n_ctx}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model."""


# -- checks and helpers every logits source shares


def check_settings(ctx: int, threads: int | None, batch: int) -> None:
    """Validate a source's window length (``ctx`` >= 2 tokens), ``threads`` (>= 1 or
    None) and ``batch`` (>= 1 token).

    Raises:
        ValueError: naming the setting and the value given.
    """
    if ctx < 2:
        raise ValueError(f"--ctx must be at least 2 tokens, not {ctx}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1 token, not {batch}")


def check_window(tokens: Sequence[int], first: int, k: int, n_ctx: int) -> list[int]:
    """Check the arguments of :meth:`LogitsSource.score`; return the window as ints.

    Raises:
        ValueError: a window shorter than 2 or longer than ``n_ctx`` tokens, ``first``
            outside ``0 .. len(tokens) - 2``, or ``k < 1``.
    """
    window = [int(t) for t in tokens]
    n = len(window)
    if n > n_ctx:
        raise ValueError(f"window of {n} tokens is longer than the context of {n_ctx} tokens")
    if n < 2:
        raise ValueError(f"a window needs at least 2 tokens to score one, got {n}")
    if not 0 <= first <= n - 2:
        raise ValueError(f"first must be in 0..{n - 2} for a window of {n} tokens, got {first}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return window


def check_ref_ids(ref_ids: Any, n_rows: int) -> Any:
    """``ref_ids`` as an int64 array ``(n_rows, k_ref)``, or None.

    Raises:
        ValueError: another shape.
    """
    if ref_ids is None:
        return None
    import numpy as np

    ref = np.asarray(ref_ids)
    if ref.ndim != 2 or ref.shape[0] != n_rows:
        raise ValueError(f"ref_ids must have shape ({n_rows}, k_ref), got {ref.shape}")
    return ref.astype(np.int64, copy=False)


def check_ref_full(ref_full: Any, n_rows: int, n_vocab: int) -> Any:
    """``ref_full`` as an ``(n_rows, n_vocab)`` array, or None; ValueError on a bad shape."""
    if ref_full is None:
        return None
    import numpy as np

    full = np.asarray(ref_full)
    if full.shape != (n_rows, n_vocab):
        raise ValueError(
            f"ref_full must have shape ({n_rows}, {n_vocab}), got {full.shape}: the "
            "reference has another vocabulary or scored other positions"
        )
    return full


def concat_rows(
    parts: Sequence[RowScores],
    k: int,
    n_vocab: int,
    k_ref: int | None,
    *,
    keep_logprobs: bool = False,
    kl: bool = False,
) -> RowScores:
    """Concatenate per-batch :class:`RowScores` in order (an empty list gives 0 rows).

    ``k`` is clipped to ``n_vocab`` for the empty case, as ``reduce_rows`` clips it;
    ``keep_logprobs`` and ``kl`` say which optional arrays the batches carry.
    """
    import numpy as np

    if not parts:
        kk = min(k, n_vocab) if n_vocab else k
        return RowScores(
            nll=np.zeros(0, dtype=np.float64),
            topk_ids=np.zeros((0, kk), dtype=np.int32),
            topk_logprobs=np.zeros((0, kk), dtype=np.float32),
            ref_logprobs=None if k_ref is None else np.zeros((0, k_ref), dtype=np.float32),
            logprobs=np.zeros((0, n_vocab), dtype=np.float32) if keep_logprobs else None,
            kl=np.zeros(0, dtype=np.float64) if kl else None,
        )
    if len(parts) == 1:
        return parts[0]
    return RowScores(
        nll=np.concatenate([p.nll for p in parts]),
        topk_ids=np.concatenate([p.topk_ids for p in parts]),
        topk_logprobs=np.concatenate([p.topk_logprobs for p in parts]),
        ref_logprobs=(None if k_ref is None else np.concatenate([p.ref_logprobs for p in parts])),
        logprobs=np.concatenate([p.logprobs for p in parts]) if keep_logprobs else None,
        kl=np.concatenate([p.kl for p in parts]) if kl else None,
    )
