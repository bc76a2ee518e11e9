"""``meltbench quant-study``: what each quantization type buys in speed and costs in
quality, in one table.

For a GGUF and a list of types (``Q4_0,Q3_K_M,Q2_K``):

1. each variant is made with llama.cpp's quantizer (:func:`meltbench.models.quantize.
   cached_variant`), requantized from the given file when it is already quantized (the
   output says so: the variant's error adds to the source's, and every comparison is
   against the source, not the original weights);
2. the source is scored once over the corpus: its perplexity and its top-k next-token
   distributions become the reference;
3. every model (source and variants) gets a speed run (``meltbench.run``: prefill and
   decode tok/s, peak RSS) and an accuracy evaluation against the reference
   (perplexity, KL divergence, top-1 agreement); the accuracy metrics are attached to the
   speed run, which is stored, so reports and ``compare`` see both;
4. the accuracy/speed Pareto front is marked: the variants that no other beats on both
   decode tok/s (higher) and mean KL divergence (lower).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meltbench.accuracy.evaluate import EvalOptions, accuracy_metrics, open_model, score_model
from meltbench.errors import UsageError

__all__ = ["QuantStudy", "StudyRow", "pareto_front", "run_quant_study"]


@dataclass
class StudyRow:
    """One model of the study.

    Attributes:
        quant: llama.cpp type name (``Q4_0``).
        path: the GGUF file.
        note: how it was made (:func:`meltbench.models.quantize.variant_note`).
        result: its speed run, with the accuracy metrics attached.
        is_source: True for the file the study started from.
        pareto: on the decode-tok/s vs KL Pareto front.
    """

    quant: str
    path: Path
    note: str
    result: Any
    is_source: bool = False
    pareto: bool = False

    def metric(self, name: str) -> float | None:
        """Median of a metric of the row's run, or None."""
        return self.result.median(name)


@dataclass
class QuantStudy:
    """The rows of a study, source first, and facts about it."""

    source: str
    rows: list[StudyRow] = field(default_factory=list)
    reference_note: str = ""


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points ``(speed, loss)`` that no other point dominates.

    A point is dominated when another has speed >= and loss <= with at least one strict
    (higher speed is better, lower loss is better).
    """
    front = []
    for i, (speed, loss) in enumerate(points):
        dominated = any(
            s >= speed and l_ <= loss and (s > speed or l_ < loss)
            for j, (s, l_) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def run_quant_study(
    model: str,
    types: Sequence[str],
    options: EvalOptions,
    *,
    bench: dict[str, Any] | None = None,
    db: str | None = None,
    on_status: Callable[[str], None] | None = None,
    on_window: Callable[[int, int, int], None] | None = None,
) -> QuantStudy:
    """Make the variants, measure speed and accuracy of each, store and return them.

    Args:
        model: a GGUF path or alias.
        types: quantization types (llama.cpp names, any case).
        options: the accuracy settings (corpus, ctx, stride, k, max_chars, threads).
        bench: keyword options for the speed runs (``n_prompt``, ``n_gen``, ``reps``,
            ``warmup``, ``threads``...; see :func:`meltbench.api.build_spec`).
        db: store every run here (None: do not store).
        on_status, on_window: progress callbacks.

    Raises:
        UsageError: not a GGUF, an unknown or unsupported type, no corpus, bad options.
    """
    import numpy as np

    from meltbench.accuracy.divergence import compare
    from meltbench.accuracy.perplexity import corpus_sha256, load_corpus
    from meltbench.accuracy.reference import Reference
    from meltbench.api import build_spec, execute_or_raise, prepare
    from meltbench.measure.stats import summarize
    from meltbench.models.cache import cached_gguf_info
    from meltbench.models.quantize import cached_variant, normalize_quant, variant_note
    from meltbench.models.resolve import resolve_model

    say = on_status or (lambda _m: None)
    if options.corpus is None:
        raise UsageError("quant-study needs --corpus FILE for perplexity and KL divergence")
    if not types:
        raise UsageError("give the quantization types to study, e.g. --types Q4_0,Q3_K_M,Q2_K")
    names = [normalize_quant(t) for t in types]
    resolved = resolve_model(model, formats=("gguf",))
    src = Path(resolved.path or model)
    src_info = cached_gguf_info(src)
    text = load_corpus(options.corpus, max_chars=options.max_chars)
    sha = corpus_sha256(text)
    bench = dict(bench or {})
    bench.setdefault("threads", options.threads)
    # validate the speed settings before anything long happens
    build_spec(model=str(src), **bench)

    study = QuantStudy(source=str(src))
    variants: list[tuple[str, Path]] = [(src_info.quant or "source", src)]
    for name in names:
        if name == src_info.quant:
            continue
        say(f"making {name} from {src.name}")
        variants.append((name, cached_variant(src, name, options.threads)))

    from meltbench.results.store import ResultStore

    store = ResultStore(Path(db)) if db is not None else None
    # The source stays open as the lockstep reference of every variant: each window is
    # scored by both, which gives the full-vocabulary KL without storing logits.
    say(f"loading the source ({src_info.quant}) as the reference")
    ref_source = open_model(str(src), "llama.cpp", options)
    meta = {
        **ref_source.describe(),
        "model": str(src),
        "ctx": options.ctx,
        "stride": options.stride,
        "k": options.k,
        "corpus": options.corpus,
        "corpus_sha256": sha,
        "corpus_chars": len(text),
    }
    reference = None
    try:
        for quant, path in variants:
            info = cached_gguf_info(path)
            note = variant_note(src_info, info)
            say(f"{quant}: speed run")
            prepared = prepare(build_spec(model=str(path), **bench))
            result = execute_or_raise(prepared)
            if path == src:  # the reference against itself: KL 0, no second pass
                say(f"{quant}: scoring the source as the reference")
                scores = score_model(ref_source, text, options, on_window=on_window)
                scores.ref_logprobs = scores.topk_logprobs
                scores.kl = np.zeros(int(scores.n_scored), dtype=np.float64)
                reference = Reference.from_scores(scores, meta)
                study.reference_note = (
                    f"reference: {src.name} ({src_info.quant}), perplexity "
                    f"{reference.perplexity:.3f} over {int(scores.n_scored)} tokens; KL over "
                    "the full vocabulary, each window scored by both models"
                )
            else:
                say(f"{quant}: scoring in lockstep with the reference")
                cand = open_model(str(path), "llama.cpp", options)
                try:
                    scores = score_model(
                        cand, text, options, reference=ref_source, on_window=on_window
                    )
                finally:
                    cand.close()
            assert reference is not None  # variants[0] is the source
            comparison = compare(reference, scores)
            for name, value in accuracy_metrics(scores, comparison).items():
                result.metrics[name] = summarize([value])
            result.accuracy = {
                "study": "quant-study",
                "note": note,
                "corpus": options.corpus,
                "corpus_sha256": sha,
                "corpus_chars": len(text),
                "n_scored": int(scores.n_scored),
                "method": dict(scores.meta),
                "reference": {
                    "model": str(src),
                    "quant": src_info.quant,
                    "perplexity": float(reference.perplexity),
                },
            }
            if store is not None:
                store.save(result)
            study.rows.append(StudyRow(quant, path, note, result, is_source=path == src))
    finally:
        ref_source.close()
        if store is not None:
            store.close()

    points = []
    for row in study.rows:
        points.append((row.metric("decode_tps") or 0.0, row.metric("kl_mean_nats") or 0.0))
    for i in pareto_front(points):
        study.rows[i].pareto = True
    return study
