"""Greedy decoding on the host for runtimes whose step call returns logits.

MNN-LLM's ``Llm.forward(ids)`` and an ExecuTorch program's ``forward(tokens, input_pos)``
each run ids after what the KV cache holds and return the logits of the last position;
neither has a per-token callback in its own generate loop. The loop is the same for both:
the prompt in one step (the prefill, whose argmax is the first token), then one step per
token, each fed the previous argmax -- greedy decoding as llama-bench's ``tg`` runs it,
end-of-sequence ignored so that exactly ``n_gen`` tokens come out.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from meltbench.engines.base import Engine

__all__ = ["GreedyStepEngine"]


class GreedyStepEngine(Engine):
    """An :class:`Engine` whose ``extend`` and ``stream`` are one logits step per call.

    Subclasses implement :meth:`_logits`; the step must finish (the logits be read into
    host memory) before it returns, so that a yielded token's timestamp is when it was
    known.
    """

    @abstractmethod
    def _logits(self, tokens: Sequence[int]) -> Any:
        """Run ``tokens`` after the cached ones; the last position's logits, a 1-D array
        of length ``n_vocab`` (anything with ``argmax()``)."""

    def extend(self, tokens: Sequence[int]) -> None:
        """Run ``tokens`` into the KV cache (one step; the logits are dropped)."""
        if tokens:
            self._logits(tokens)

    def stream(self, prompt: Sequence[int], n_gen: int) -> Iterator[int]:
        """Prefill ``prompt`` in one step, then yield ``n_gen`` greedy tokens."""
        token = int(self._logits(prompt).argmax())
        yield token
        for _ in range(n_gen - 1):
            token = int(self._logits([token]).argmax())
            yield token
