"""``meltbench eval``: perplexity over a corpus, divergence from a reference, task
accuracy, stored as a run.

One evaluation is one :class:`~meltbench.results.schema.RunResult` whose ``test`` is
``ppl:<corpus>@ctx<C>/s<S>`` and whose ``metrics`` hold ``perplexity`` and, against a
reference, ``perplexity_ref``, ``ppl_ratio``, ``kl_topk_bound_mean_nats``,
``ref_topk_mass_mean`` and ``top1_agreement`` (each one value, n = 1), and — when the
reference is a model, scored in lockstep — the full-vocabulary ``kl_mean_nats``,
``kl_median_nats``, ``kl_p99_nats``, ``kl_max_nats``; plus ``task_<task>_<metric>`` for
lm-evaluation-harness tasks. The ``accuracy`` section keeps
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

__all__ = ["EvalOptions", "accuracy_metrics", "evaluate_model", "open_model", "score_model"]

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
        engine_options: llama.cpp keyword options for both the model and a reference
            model (``-o flash_attn=true``; see :func:`.sources.open_source`).
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
    engine_options: tuple[tuple[str, Any], ...] = ()


def open_model(model: str, engine: str, options: EvalOptions) -> Any:
    """``model`` as a logits source with the options' ctx, threads, dtype and ``-o``."""
    from meltbench.accuracy.sources import open_source

    return open_source(
        model,
        engine,
        ctx=options.ctx,
        threads=options.threads,
        dtype=options.dtype,
        options=dict(options.engine_options) or None,
    )


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
    reference: Any = None,
    on_window: ProgressCallback | None = None,
) -> Any:
    """Tokenize ``text`` with ``source`` and score it (a ``CorpusScores``).

    With a ``reference`` logits source, both score each window in lockstep (the exact
    full-vocabulary KL, :func:`~meltbench.accuracy.perplexity.score_corpus`); the
    reference must tokenize ``text`` identically (UsageError otherwise).
    """
    import numpy as np

    from meltbench.accuracy.perplexity import score_corpus

    tokens = np.asarray(source.tokenize(text), dtype=np.int32)
    if len(tokens) < 2:
        raise UsageError("the corpus is shorter than 2 tokens; give a longer --corpus")
    if reference is not None:
        from meltbench.accuracy.divergence import check_same_tokens

        check_same_tokens(np.asarray(reference.tokenize(text), dtype=np.int32), tokens)
    return score_corpus(
        source,
        tokens,
        ctx=options.ctx,
        stride=options.stride,
        k=options.k,
        ref_topk_ids=ref_topk_ids,
        reference=reference,
        on_window=on_window,
    )


def accuracy_metrics(scores: Any, comparison: Any = None) -> dict[str, float]:
    """Metric name -> value of one evaluation (``perplexity`` and the comparison's)."""
    metrics: dict[str, float] = {"perplexity": float(scores.perplexity)}
    if comparison is not None:
        metrics.update({k: float(v) for k, v in comparison.to_metrics().items()})
    return metrics


def _reference_file(options: EvalOptions, corpus_sha: str) -> Any:
    """The saved reference to compare with (top-k only: the KL bound)."""
    from meltbench.accuracy.reference import check_compatible, load_reference

    assert options.reference is not None
    ref = load_reference(options.reference)
    check_compatible(
        ref,
        n_vocab=ref.meta.get("n_vocab"),
        ctx=options.ctx,
        stride=options.stride,
        corpus_sha256=corpus_sha,
    )
    return ref


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

    reference = ref_source = None
    if options.reference is not None and _is_reference_file(options.reference):
        say(f"reference: {options.reference} (saved top-{options.k}: the KL is a bound)")
        reference = _reference_file(options, corpus_sha or "")
    elif options.reference is not None and text is not None:
        say(f"reference: {options.reference}, scored in lockstep (full-vocabulary KL)")
        ref_source = open_model(options.reference, engine, options)

    try:
        source = open_model(model, engine, options)
    except BaseException:
        if ref_source is not None:
            ref_source.close()
        raise
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
            scores = score_model(
                source,
                text,
                options,
                ref_topk_ids=ref_ids,
                reference=ref_source,
                on_window=on_window,
            )
            if ref_source is not None:
                from meltbench.accuracy.reference import Reference

                assert options.reference is not None and scores.reference_scores is not None
                meta = _meta(ref_source, options, corpus_sha or "", len(text), options.reference)
                reference = Reference.from_scores(scores.reference_scores, meta)
            comparison = None
            if reference is not None:
                from meltbench.accuracy.divergence import compare

                comparison = compare(reference, scores)
                accuracy["kl_method"] = _kl_method(comparison)
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
        if ref_source is not None:
            ref_source.close()

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


def _kl_method(comparison: Any) -> str:
    """One line for the record: how the KL figures were computed."""
    if comparison.kl_is_full:
        return "full vocabulary, reference scored in lockstep (as llama-perplexity --kl-divergence)"
    return (
        f"saved reference: only a lower bound (top-{comparison.k} tokens + the rest, "
        "kl_topk_bound_mean_nats); pass the reference model for the full KL"
    )


def _reference_summary(reference: Any) -> dict[str, Any] | None:
    if reference is None:
        return None
    keep = ("model", "engine", "quant", "path", "n_vocab", "ctx", "stride", "k", "created_at")
    return {k: reference.meta.get(k) for k in keep if k in reference.meta} | {
        "perplexity": float(reference.perplexity)
    }
