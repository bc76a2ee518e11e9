"""``meltbench eval``: perplexity over a corpus, divergence from a reference, task
accuracy, stored as a run.

One evaluation is one :class:`~meltbench.results.schema.RunResult` whose ``test`` is
``ppl:<corpus>@ctx<C>/s<S>`` and whose ``metrics`` hold ``perplexity`` and, against a
reference, ``perplexity_ref``, ``ppl_ratio``, ``kl_mean_nats``, ``kl_median_nats``,
``kl_p99_nats``, ``kl_max_nats`` and ``top1_agreement`` (each one value, n = 1), plus
``task_<task>_<metric>`` for lm-evaluation-harness tasks. The ``accuracy`` section keeps
the method, corpus hash, token counts and the reference's description, so reports and
``compare`` can put accuracy next to speed. The per-token arrays are not stored in the
database (they are what ``--save-reference`` writes).

The evaluation runs in the calling process (nothing is timed); a quantization study
(:mod:`meltbench.accuracy.quant_study`) attaches the same section to each variant's
speed run instead.
"""

from __future__ import annotations

import datetime as _dt
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meltbench.errors import UsageError
from meltbench.timestamps import utc_now

__all__ = ["EvalOptions", "accuracy_metrics", "evaluate_model", "score_model"]

ProgressCallback = Callable[[int, int, int], None]


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how.

    Attributes:
        corpus: text file for perplexity (None: tasks only).
        max_chars: use only the first ``max_chars`` characters of the corpus.
        ctx: window length, tokens (BOS included).
        stride: how far each window advances, tokens (the HF guide's stride).
        k: top-k kept per position for the reference and KL.
        reference: a model (alias or path, evaluated with the same engine) or a saved
            reference file (``.npz``) to compare against.
        save_reference: write this model's scores as a reference file.
        tasks: lm-evaluation-harness task names.
        task_path: a folder of local task definitions (lm-eval ``include_path``).
        limit: evaluate only this many documents per task.
        threads: CPU threads for the engine.
        dtype: engine dtype (transformers: float32 default).
    """

    corpus: str | None = None
    max_chars: int | None = None
    ctx: int = 512
    stride: int = 256
    k: int = 32
    reference: str | None = None
    save_reference: str | None = None
    tasks: tuple[str, ...] = ()
    task_path: str | None = None
    limit: int | None = None
    threads: int | None = None
    dtype: str | None = None


def _check(options: EvalOptions) -> None:
    if options.corpus is None and not options.tasks:
        raise UsageError("nothing to evaluate: pass --corpus FILE and/or --tasks NAMES")
    if options.corpus is None and (options.reference or options.save_reference):
        raise UsageError("--reference and --save-reference need --corpus FILE")
    if options.ctx < 2:
        raise UsageError(f"--ctx must be >= 2 tokens (got {options.ctx})")
    if not 1 <= options.stride < options.ctx:
        raise UsageError(
            f"--stride must be between 1 and ctx - 1 = {options.ctx - 1} (got {options.stride})"
        )
    if options.k < 1:
        raise UsageError(f"--top-k must be >= 1 (got {options.k})")
    if options.max_chars is not None and options.max_chars < 1:
        raise UsageError(f"--max-chars must be >= 1 (got {options.max_chars})")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit must be >= 1 (got {options.limit})")


def _is_reference_file(ref: str) -> bool:
    return ref.endswith(".npz") and Path(ref).is_file()


def score_model(
    source: Any,
    text: str,
    options: EvalOptions,
    *,
    ref_topk_ids: Any = None,
    on_window: ProgressCallback | None = None,
) -> Any:
    """Tokenize ``text`` with ``source`` and score it (a ``CorpusScores``)."""
    import numpy as np

    from meltbench.accuracy.perplexity import score_corpus

    tokens = np.asarray(source.tokenize(text), dtype=np.int32)
    if len(tokens) < 2:
        raise UsageError("the corpus is shorter than 2 tokens; give a longer --corpus")
    return score_corpus(
        source,
        tokens,
        ctx=options.ctx,
        stride=options.stride,
        k=options.k,
        ref_topk_ids=ref_topk_ids,
        on_window=on_window,
    )


def accuracy_metrics(scores: Any, comparison: Any = None) -> dict[str, float]:
    """Metric name -> value of one evaluation (``perplexity`` and the comparison's)."""
    metrics: dict[str, float] = {"perplexity": float(scores.perplexity)}
    if comparison is not None:
        metrics.update({k: float(v) for k, v in comparison.to_metrics().items()})
    return metrics


def _reference_for(
    options: EvalOptions,
    engine: str,
    text: str,
    corpus_sha: str,
    on_window: ProgressCallback | None,
) -> Any:
    """The reference to compare with: loaded from a file, or computed now."""
    from meltbench.accuracy.reference import Reference, check_compatible, load_reference
    from meltbench.accuracy.sources import open_source

    assert options.reference is not None
    if _is_reference_file(options.reference):
        ref = load_reference(options.reference)
        check_compatible(
            ref,
            n_vocab=ref.meta.get("n_vocab"),
            ctx=options.ctx,
            stride=options.stride,
            corpus_sha256=corpus_sha,
        )
        return ref
    source = open_source(
        options.reference, engine, ctx=options.ctx, threads=options.threads, dtype=options.dtype
    )
    try:
        scores = score_model(source, text, options, on_window=on_window)
        meta = _meta(source, options, corpus_sha, len(text), options.reference)
        return Reference.from_scores(scores, meta)
    finally:
        source.close()


def _meta(
    source: Any, options: EvalOptions, corpus_sha: str, corpus_chars: int, model: str
) -> dict[str, Any]:
    from meltbench import __version__

    return {
        **source.describe(),
        "model": model,
        "ctx": options.ctx,
        "stride": options.stride,
        "k": options.k,
        "corpus": options.corpus,
        "corpus_sha256": corpus_sha,
        "corpus_chars": corpus_chars,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "meltbench_version": __version__,
    }


def evaluate_model(
    model: str,
    engine: str = "llama.cpp",
    options: EvalOptions | None = None,
    *,
    on_window: ProgressCallback | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Any:
    """Evaluate ``model`` with ``engine`` and return the evaluation as a ``RunResult``.

    Args:
        model: alias or path, as for ``meltbench run``.
        engine: ``llama.cpp`` or ``transformers``.
        options: see :class:`EvalOptions`.
        on_window: progress: ``(window index, n windows, tokens scored so far)``.
        on_status: one-line status messages ("computing the reference ...").

    Raises:
        UsageError: bad options, missing corpus, an engine without a logits source,
            incompatible reference (different vocabulary, tokenizer, ctx or corpus).
    """
    from meltbench.accuracy.sources import open_source
    from meltbench.config import EngineSpec, ModelSpec, RunSpec, WorkloadSpec
    from meltbench.environment import collect_environment
    from meltbench.measure.stats import summarize
    from meltbench.results.schema import RunResult

    options = options or EvalOptions()
    _check(options)
    say = on_status or (lambda _msg: None)
    started = utc_now()
    text = corpus_sha = None
    if options.corpus is not None:
        from meltbench.accuracy.perplexity import corpus_sha256, load_corpus

        text = load_corpus(options.corpus, max_chars=options.max_chars)
        corpus_sha = corpus_sha256(text)

    reference = None
    if options.reference is not None:
        say(f"reference: {options.reference}")
        reference = _reference_for(options, engine, text or "", corpus_sha or "", on_window)

    source = open_source(
        model, engine, ctx=options.ctx, threads=options.threads, dtype=options.dtype
    )
    accuracy: dict[str, Any] = {"engine": engine, "source": source.describe()}
    metrics: dict[str, float] = {}
    try:
        if text is not None:
            say(f"scoring {options.corpus} with {engine}")
            ref_ids = reference.topk_ids if reference is not None else None
            if reference is not None:
                from meltbench.accuracy.reference import check_compatible

                check_compatible(
                    reference,
                    n_vocab=source.n_vocab,
                    ctx=options.ctx,
                    stride=options.stride,
                    corpus_sha256=corpus_sha,
                )
            scores = score_model(source, text, options, ref_topk_ids=ref_ids, on_window=on_window)
            comparison = None
            if reference is not None:
                from meltbench.accuracy.divergence import compare

                comparison = compare(reference, scores)
            metrics.update(accuracy_metrics(scores, comparison))
            accuracy.update(
                {
                    "corpus": options.corpus,
                    "corpus_sha256": corpus_sha,
                    "corpus_chars": len(text),
                    "n_tokens": len(scores.tokens),
                    "n_scored": int(scores.n_scored),
                    "method": dict(scores.meta),
                    "reference": _reference_summary(reference),
                }
            )
            if options.save_reference:
                from meltbench.accuracy.reference import Reference, save_reference

                meta = _meta(source, options, corpus_sha or "", len(text), model)
                save_reference(Reference.from_scores(scores, meta), options.save_reference)
                accuracy["saved_reference"] = os.path.abspath(options.save_reference)
        if options.tasks:
            from meltbench.accuracy.lm_eval_tasks import run_tasks, task_metrics

            say(f"lm-evaluation-harness: {', '.join(options.tasks)}")
            results = run_tasks(
                source, list(options.tasks), include_path=options.task_path, limit=options.limit
            )
            accuracy["tasks"] = results
            metrics.update(task_metrics(results))
    finally:
        source.close()

    from meltbench.models.resolve import resolve_model
    from meltbench.registry import ENGINES

    engine_cls = ENGINES.load(engine)
    resolved = resolve_model(model, formats=tuple(engine_cls.model_formats), dtype=options.dtype)
    facts = {"ref": model, "alias": resolved.alias, "format": resolved.format}
    facts.update(resolved.info)
    corpus_name = Path(options.corpus).stem if options.corpus else "tasks"
    test = f"ppl:{corpus_name}@ctx{options.ctx}/s{options.stride}" if text else "tasks"
    spec = RunSpec(
        model=ModelSpec(ref=model),
        engine=EngineSpec(name=engine_cls.name, threads=options.threads, dtype=options.dtype),
        workload=WorkloadSpec(n_prompt=options.ctx, n_gen=1, reps=1, warmup=0),
    )
    return RunResult(
        run_id=uuid.uuid4().hex,
        status="ok",
        started_at=started,
        finished_at=utc_now(),
        test=test,
        spec=spec,
        settings={"threads": options.threads, "n_ctx": options.ctx},
        model=facts,
        engine={"name": engine_cls.name, **accuracy["source"]},
        environment=collect_environment(),
        metrics={name: summarize([value]) for name, value in metrics.items()},
        accuracy=accuracy,
    )


def _reference_summary(reference: Any) -> dict[str, Any] | None:
    if reference is None:
        return None
    keep = ("model", "engine", "quant", "path", "n_vocab", "ctx", "stride", "k", "created_at")
    return {k: reference.meta.get(k) for k in keep if k in reference.meta} | {
        "perplexity": float(reference.perplexity)
    }
