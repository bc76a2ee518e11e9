"""Task accuracy through lm-evaluation-harness, for any meltbench :class:`LogitsSource`.

This is a bridge, not a reimplementation: lm-evaluation-harness (``lm-eval``, EleutherAI)
builds the requests of its tasks, computes the metrics and their standard errors; this
module answers the requests with a :class:`~meltbench.accuracy.base.LogitsSource`, so
every engine that can score tokens (llama.cpp, transformers, ...) gets the same task
accuracy, measured the same way, next to its speed.

Requests (see ``lm_eval/api/model.py``, class ``LM``):

- ``loglikelihood((context, continuation))`` -> ``(logprob, is_greedy)``: the window is
  ``[BOS] + context_tokens + continuation_tokens``, truncated from the left to
  ``source.n_ctx`` tokens, scored once with ``k=1``; ``logprob = -sum(nll)`` over the
  continuation's positions (nats) and ``is_greedy`` says whether every continuation token
  is the argmax. The pair is tokenized as lm-eval's causal models do it
  (``TemplateLM._encode_pair`` in ``lm_eval/api/model.py``, used by ``HFLM``): trailing
  spaces of the context move to the continuation, the concatenation is tokenized and split
  at the length of the context's own tokens, so a token merged across the boundary goes to
  the continuation. An empty context is scored after BOS alone (``TemplateLM.loglikelihood``
  uses ``prefix_token_id``, which is BOS for models that have one).
- ``loglikelihood_rolling((text,))`` -> ``logprob``: the whole text's log-likelihood after
  BOS, over lm-eval's own rolling windows (``lm_eval.utils.get_rolling_token_windows`` and
  ``make_disjoint_window`` with ``context_len=1``, as ``HFLM.loglikelihood_rolling``), each
  window at most ``n_ctx`` tokens; every token is predicted exactly once.
- ``generate_until((context, gen_kwargs))`` -> text: greedy decoding, one :meth:`score`
  call per generated token over the whole window (a LogitsSource has no KV cache across
  calls), so ``n`` tokens after a ``c``-token prompt cost ``n`` evaluations of up to
  ``c + n`` tokens: O(n * (c + n)) token evaluations, O(n^2) for long outputs. Usable for
  short answers (``max_gen_toks`` of tens of tokens), slow beyond. It needs text decoding,
  which the LogitsSource contract lacks: it is available when the source also has
  ``detokenize(ids) -> str`` (and, optionally, ``eos_token() -> int | None`` to stop at
  end of sequence); otherwise generation tasks are refused with a :class:`UsageError`.

Differences from ``HFLM`` worth knowing: a BOS is put before every window whenever the
model has one (meltbench's convention for all accuracy measurements; HFLM adds it only
for models whose tokenizer does, Gemma included); a window holds at most ``n_ctx`` tokens
*including* the last continuation token (HFLM feeds ``max_length`` tokens and scores one
more); requests are scored one by one, not batched.

Offline: lm-eval reads task data with ``datasets.load_dataset``. A hub dataset that is not
in the local cache fails with one :class:`UsageError` line; without ``HF_HUB_OFFLINE=1`` /
``HF_DATASETS_OFFLINE=1`` in the environment (read when ``datasets`` is first imported),
``datasets`` first retries the unreachable hub for about 20 seconds. Local tasks (a
directory of task YAML files given as ``include_path``) need no network at all; see
``tests/fixtures/lm_eval/`` for one.

lm-eval is imported lazily: importing this module costs nothing, and using it without
lm-eval installed raises :class:`UsageError` with the fix (``pip install
'meltbench[eval]'``). ``MeltbenchLM`` (the ``lm_eval.api.model.LM`` subclass) is built on
first access: ``from meltbench.accuracy.lm_eval_bridge import MeltbenchLM`` works when
lm-eval is installed, and :func:`make_lm` returns an instance.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from meltbench.accuracy.base import LogitsSource
from meltbench.errors import UsageError

# MeltbenchLM is reached through the module __getattr__ (it needs lm-eval); not in __all__
# so that `import *` never imports lm-eval.
__all__ = ["encode_pair", "make_lm"]  # tasks: meltbench.accuracy.lm_eval_tasks

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'meltbench[eval]'"
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HFLM default
_META_KEYS = ("lm_eval_version", "tasks", "limit", "num_fewshot")


# ----------------------------------------------------------------------------- lm-eval


def _import_lm_eval() -> Any:
    """The ``lm_eval`` package, or a one-line :class:`UsageError` saying how to get it."""
    try:
        import lm_eval
        import lm_eval.api.model  # the LM base class
    except ImportError as exc:
        raise UsageError(
            f"task accuracy needs lm-evaluation-harness, which cannot be imported ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return lm_eval


def _lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:  # pragma: no cover - imported but not installed
        return "unknown"


# ----------------------------------------------------------------------------- tokens


def encode_pair(
    tokenize: Callable[[str], list[int]], context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Split ``context + continuation`` into context and continuation tokens, as lm-eval does.

    Follows ``TemplateLM._encode_pair`` (``lm_eval/api/model.py``, the causal branch used
    by ``HFLM``): trailing whitespace of the context is moved to the start of the
    continuation; the concatenation is tokenized, and split after as many tokens as the
    context alone has. Where the tokenizer merges across the boundary the merged token
    counts as continuation (and, if the merge shortens the whole, the continuation can be
    empty: lm-eval then scores nothing).

    Args:
        tokenize: text -> token ids, without BOS/EOS.
        context: non-empty conditioning text.
        continuation: the text to score.

    Returns:
        ``(context_tokens, continuation_tokens)``.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = list(tokenize(context + continuation))
    context_tokens = list(tokenize(context))
    return context_tokens, whole[len(context_tokens) :]


def _stop_index(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest occurrence of any stop string in ``text``, or None."""
    found = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(found) if found else None


# ----------------------------------------------------------------------------- core


class _SourceScorer:
    """Answers lm-eval's three request kinds with a :class:`LogitsSource` (no lm-eval import).

    :class:`MeltbenchLM` is this plus ``lm_eval.api.model.LM``; the methods here take the
    requests' ``args`` tuples, so they are usable (and testable) without Instances.
    """

    def __init__(
        self,
        source: LogitsSource,
        *,
        progress: bool = False,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
    ) -> None:
        if source.n_ctx < 2:
            raise UsageError(
                f"the model's window (n_ctx={source.n_ctx}) is too short to score anything; "
                "open it with a context of at least 2 tokens"
            )
        self.source = source
        self.progress = progress
        self.max_gen_toks = max_gen_toks
        self._bos = source.bos_token()

    # -- helpers

    def _iter(self, items: Sequence[Any], desc: str) -> Any:
        if not self.progress:
            return items
        from tqdm import tqdm

        return tqdm(items, desc=desc)

    def _no_bos(self, what: str) -> UsageError:
        return UsageError(
            f"{what} needs a token to condition the first token on, and this model has no "
            f"BOS token ({self.source.engine}); use tasks that score continuations of a "
            "non-empty context (multiple_choice)"
        )

    def _prefix(self) -> list[int]:
        return [] if self._bos is None else [int(self._bos)]

    # -- loglikelihood

    def loglikelihood_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """``(logprob in nats, is_greedy)`` of each ``(context, continuation)``.

        Raises:
            UsageError: a continuation longer than ``n_ctx - 1`` tokens, or an empty
                context with a model that has no BOS.
        """
        out = []
        truncated = 0
        for context, continuation in self._iter(pairs, "loglikelihood"):
            ll, greedy, cut = self._loglikelihood_one(context, continuation)
            out.append((ll, greedy))
            truncated += cut
        if truncated:
            log.warning(
                "%d of %d loglikelihood requests were longer than the model's window "
                "(n_ctx=%d) and were truncated from the left",
                truncated,
                len(pairs),
                self.source.n_ctx,
            )
        return out

    def _loglikelihood_one(self, context: str, continuation: str) -> tuple[float, bool, bool]:
        source = self.source
        if context == "":
            if self._bos is None:
                raise self._no_bos("scoring a continuation with an empty context")
            ctx, cont = [], list(source.tokenize(continuation))
        else:
            ctx, cont = encode_pair(source.tokenize, context, continuation)
        if not cont:
            log.warning(
                "continuation %r of context %r has no tokens of its own (merged into the "
                "context by the tokenizer); its loglikelihood is 0, as in lm-eval",
                continuation,
                context[-40:],
            )
            return 0.0, True, False
        n_ctx = source.n_ctx
        if len(cont) + 1 > n_ctx:
            raise UsageError(
                f"a continuation of {len(cont)} tokens does not fit the model's window of "
                f"{n_ctx} tokens; open the model with a larger context (ctx)"
            )
        window = self._prefix() + ctx + cont
        cut = len(window) > n_ctx
        window = window[-n_ctx:]
        first = len(window) - len(cont) - 1
        rows = source.score(window, first, 1)
        nll = [float(x) for x in rows.nll]
        if len(nll) != len(cont):
            raise RuntimeError(
                f"{type(source).__name__}.score returned {len(nll)} rows for "
                f"{len(cont)} scored positions"
            )
        greedy = all(int(row[0]) == tok for row, tok in zip(rows.topk_ids, cont, strict=True))
        # fsum: the correctly rounded sum, independent of the order of the terms.
        return -math.fsum(nll), greedy, cut

    # -- loglikelihood_rolling

    def loglikelihood_rolling_texts(self, texts: Sequence[str]) -> list[float]:
        """Log-likelihood (nats) of each whole text after BOS, over lm-eval's rolling windows.

        Raises:
            UsageError: the model has no BOS token (nothing to condition the first token on).
        """
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        out = []
        for text in self._iter(texts, "loglikelihood_rolling"):
            tokens = list(self.source.tokenize(text))
            if not tokens:
                out.append(0.0)
                continue
            if self._bos is None:
                raise self._no_bos("loglikelihood_rolling (perplexity tasks)")
            nll: list[float] = []
            # max_seq_len = n_ctx - 1: lm-eval's windows are model *inputs*; our window also
            # holds the last predicted token, so it is one longer (at most n_ctx).
            windows = get_rolling_token_windows(
                token_list=tokens,
                prefix_token=int(self._bos),
                max_seq_len=self.source.n_ctx - 1,
                context_len=1,
            )
            for ctx, pred in map(make_disjoint_window, windows):
                rows = self.source.score(ctx + pred, len(ctx) - 1, 1)
                nll.extend(float(x) for x in rows.nll)
            if len(nll) != len(tokens):
                raise RuntimeError(f"scored {len(nll)} positions for {len(tokens)} tokens")
            out.append(-math.fsum(nll))
        return out

    # -- generate_until

    def can_generate(self) -> bool:
        """Whether the source can decode text (has ``detokenize``), needed by generation."""
        return callable(getattr(self.source, "detokenize", None))

    def generate(self, args: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        """Greedy continuation of each context until a stop string or ``max_gen_toks``.

        Cost: one ``score`` call per generated token over the whole window (see the module
        docstring). Generation kwargs honoured: ``until`` (str or list of str),
        ``max_gen_toks``; ``do_sample=True`` with a non-zero temperature is refused.

        Raises:
            UsageError: the source cannot decode text, sampling was asked for, or the
                context is empty and the model has no BOS.
        """
        if not self.can_generate():
            raise UsageError(
                f"generation tasks need text decoding, which this {self.source.engine} "
                "logits source does not provide (no detokenize()); use loglikelihood or "
                "multiple_choice tasks"
            )
        detokenize = self.source.detokenize  # type: ignore[attr-defined]
        eos_fn = getattr(self.source, "eos_token", None)
        eos = eos_fn() if callable(eos_fn) else None
        out = []
        for context, gen_kwargs in self._iter(args, "generate_until"):
            kwargs = dict(gen_kwargs or {})
            until = kwargs.get("until") or []
            stops = [until] if isinstance(until, str) else list(until)
            max_toks = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            if kwargs.get("do_sample") and float(kwargs.get("temperature", 1.0) or 0.0) > 0:
                raise UsageError(
                    "sampling (do_sample=True) is not supported: the lm-eval bridge decodes "
                    "greedily; remove do_sample from the generation kwargs"
                )
            prompt = self._prefix() + list(self.source.tokenize(context))
            if not prompt:
                raise self._no_bos("generating from an empty context")
            out.append(self._generate_one(prompt, stops, max_toks, detokenize, eos))
        return out

    def _generate_one(
        self,
        prompt: list[int],
        stops: list[str],
        max_toks: int,
        detokenize: Callable[[list[int]], str],
        eos: int | None,
    ) -> str:
        n_ctx = self.source.n_ctx
        generated: list[int] = []
        text = ""
        for _ in range(max_toks):
            # score() reports the distribution *after* position i only for i <= len - 2,
            # so a placeholder (a repeat of the last token) follows the real window.
            window = (prompt + generated)[-(n_ctx - 1) :]
            window.append(window[-1])
            rows = self.source.score(window, len(window) - 2, 1)
            token = int(rows.topk_ids[0][0])
            if eos is not None and token == eos:
                break
            generated.append(token)
            text = detokenize(generated)
            cut = _stop_index(text, stops)
            if cut is not None:
                return text[:cut]
        return text


# ----------------------------------------------------------------------------- LM class


@functools.cache
def _lm_class() -> type:
    """Build ``MeltbenchLM(_SourceScorer, lm_eval.api.model.LM)`` (imports lm-eval once)."""
    _import_lm_eval()
    from lm_eval.api.model import LM

    class MeltbenchLM(_SourceScorer, LM):
        """lm-evaluation-harness model backed by a meltbench :class:`LogitsSource`.

        ``MeltbenchLM(source, progress=False, max_gen_toks=256)``; pass it as
        ``lm_eval.simple_evaluate(model=...)``. See the module docstring for the
        definitions of the three request kinds.
        """

        def __init__(self, source: LogitsSource, **kwargs: Any) -> None:
            LM.__init__(self)
            _SourceScorer.__init__(self, source, **kwargs)

        def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
            """``(sum of log-probabilities, is greedy)`` of each (context, continuation)."""
            return self.loglikelihood_pairs([req.args for req in requests])

        def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
            """Total log-likelihood of each whole text, over windows of ``n_ctx``."""
            return self.loglikelihood_rolling_texts([req.args[0] for req in requests])

        def generate_until(self, requests: list[Any]) -> list[str]:
            """Greedy continuations up to the stop strings (needs a detokenizing source)."""
            return self.generate([req.args for req in requests])

        def get_model_info(self) -> dict[str, Any]:
            """Stored by ``simple_evaluate`` in ``results["config"]``."""
            return {"meltbench_source": self.source.describe()}

    MeltbenchLM.__module__ = __name__
    MeltbenchLM.__qualname__ = "MeltbenchLM"
    return MeltbenchLM


def __getattr__(name: str) -> Any:
    if name == "MeltbenchLM":
        return _lm_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_lm(
    source: LogitsSource, *, progress: bool = False, max_gen_toks: int = DEFAULT_MAX_GEN_TOKS
) -> Any:
    """A ``MeltbenchLM`` (an ``lm_eval.api.model.LM``) scoring with ``source``.

    Args:
        source: an open logits source; the caller keeps ownership (and closes it).
        progress: show a tqdm progress bar per request kind.
        max_gen_toks: default generation length when a task does not set one.

    Raises:
        UsageError: lm-eval is not installed, or ``source.n_ctx < 2``.
    """
    return _lm_class()(source, progress=progress, max_gen_toks=max_gen_toks)


# requests' and httpx's connection errors are not builtin ConnectionErrors: matched by name.
