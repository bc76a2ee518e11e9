"""Figures of stored runs for the HTML report and for papers (matplotlib, Agg, no pyplot).

Only the figures that the data support are made; each one says which runs it shows.

======================== ===============================================================
id                       what it shows
======================== ===============================================================
``tps-vs-context``       prefill and decode tok/s (mean, 95% CI error bars) against prompt
                         or context tokens, one line per configuration with >= 2 lengths
``latency-distributions`` TTFT and inter-token latency (ms) of each run, from raw samples:
                         box plots with every sample drawn on top
``memory-vs-context``    peak resident memory (MiB) against prompt or context tokens;
                         failed runs (e.g. out of memory) drawn as crosses
``quant-speed-size``     decode and prefill tok/s against model file size (MiB), one point
                         per quant type of one model and workload, with the speed/size
                         Pareto front (speed and size only)
``operator-breakdown``   milliseconds per operator category of each profiled run
                         (``--profile``), as stacked horizontal bars
``decode-roofline``      decode tok/s (median, 95% CI) against bytes read per decoded
                         token (weights + KV cache), under the memory-bandwidth roof
                         ``tok/s = bandwidth / bytes`` of each measured bandwidth; one
                         point per run, labelled by model, quant and depth
``ttft-vs-document-length`` document tasks: TTFT (p50, p90) and peak RSS against
                         document length, one line per model and engine
``goodput-vs-request-rate`` server load: request throughput, goodput and SLO attainment
                         against the arrival rate, one line per server and concurrency
``latency-vs-batch``     forward tasks (``--task encode``/``classify``): latency per pass
                         (median, fastest to p90) and items/s against batch size, one line
                         per model, engine, threads and shape
``arch-pareto``          ``meltbench arch-search``: decode ms/token, prefill ms and peak
                         RSS against exact parameter count per target, measured points,
                         the latency model's predictions and both Pareto fronts
======================== ===============================================================

Energy, temperature and accuracy metrics are stored with the runs that measured them but
not plotted yet; :data:`NOT_PLOTTED` names them, and the HTML report says which runs
carry them.

Context curves group runs by their identity, as the sweep's scaling fits do
(:func:`meltbench.results.identity.context_curves`):
everything that must stay fixed along a curve (model, quant, weights, engine, dtype,
device, target, threads, ``n_gen``), then either a fixed ``n_depth`` with ``x = n_prompt``
or a fixed ``n_prompt`` with ``x = n_depth + n_prompt`` (the KV length at the end of
prefill), keeping curves with >= 2 distinct x values.

matplotlib is imported inside the functions only: ``import meltbench`` and the measuring
code never load it. Figures are ``matplotlib.figure.Figure`` objects with an Agg canvas,
not pyplot figures, so no global state (backend, open-figure registry) is touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from meltbench.report.figure_base import ReportFigure
from meltbench.report.plots_archsearch import arch_pareto_figure
from meltbench.report.plots_context import context_memory_figure, context_throughput_figure
from meltbench.report.plots_forward import forward_batch_figure
from meltbench.report.plots_quant import quantization_figure
from meltbench.report.plots_roofline import decode_roofline_figure
from meltbench.report.plots_runs import latency_distribution_figure, operator_breakdown_figure
from meltbench.report.plots_workloads import document_length_figure, goodput_rate_figure
from meltbench.results.schema import RunResult

__all__ = [
    "NOT_PLOTTED",
    "PLOT_IDS",
    "PLOT_NEEDS",
    "ReportFigure",
    "arch_pareto_figure",
    "build_figures",
    "context_memory_figure",
    "context_throughput_figure",
    "decode_roofline_figure",
    "document_length_figure",
    "forward_batch_figure",
    "goodput_rate_figure",
    "latency_distribution_figure",
    "operator_breakdown_figure",
    "quantization_figure",
    "write_figures",
]

#: Every figure id, in report order.
PLOT_IDS = (
    "tps-vs-context",
    "latency-distributions",
    "memory-vs-context",
    "quant-speed-size",
    "operator-breakdown",
    "decode-roofline",
    "ttft-vs-document-length",
    "goodput-vs-request-rate",
    "latency-vs-batch",
    "arch-pareto",
)

#: What each figure needs from the data (shown in the report when a figure is absent).
PLOT_NEEDS: dict[str, str] = {
    "tps-vs-context": "ok runs of one configuration at >= 2 prompt or context lengths",
    "latency-distributions": "ok runs with raw TTFT or inter-token latency samples",
    "memory-vs-context": "runs of one configuration at >= 2 prompt or context lengths "
    "with a peak RSS",
    "quant-speed-size": "ok runs of one model and workload in >= 2 quant types with "
    "known file sizes",
    "operator-breakdown": "runs with a profile (meltbench run --profile)",
    "decode-roofline": "ok runs of GGUF models with decode tok/s and a measured memory "
    "bandwidth (meltbench bandwidth)",
    "ttft-vs-document-length": "document-workload runs of one model and engine at >= 2 "
    "--doc-tokens",
    "goodput-vs-request-rate": "request-workload runs of one server at >= 2 --request-rate",
    "latency-vs-batch": "ok forward runs (--task encode/classify) of one model, engine and "
    "shape at >= 2 --batch-size",
    "arch-pareto": "the last sweep of a meltbench arch-search (report --sweep ID)",
}

#: Quantities the report does not plot, keyed by name -> the metric names that show
#: whether any run measured them (the report says which runs did, and why others did not).
NOT_PLOTTED: dict[str, tuple[str, ...]] = {
    "energy and power": ("energy_j_decode", "j_per_token_decode", "avg_power_w"),
    "temperature and throttling": ("temp_max_c",),
    "accuracy": ("perplexity", "kl_mean_nats", "top1_agreement"),
}


def build_figures(
    results: Sequence[RunResult], analysis: Mapping[str, Any] | None = None
) -> list[ReportFigure]:
    """Every figure the data support, in :data:`PLOT_IDS` order.

    Args:
        results: stored runs (any mix of models, engines, statuses).
        analysis: a sweep's analysis (``ResultStore.get_sweep(id)["analysis"]``:
            ``{"scaling": [...], "max_context": [...]}``), or None.

    Returns:
        Zero to ten :class:`ReportFigure` (absent ids: see :data:`PLOT_NEEDS`). Energy,
        temperature and accuracy are not plotted yet (:data:`NOT_PLOTTED`).

    Raises:
        ImportError: matplotlib is not installed (``pip install 'meltbench[report]'``).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("plots need matplotlib: pip install 'meltbench[report]'") from exc
    made = [
        context_throughput_figure(results, analysis),
        latency_distribution_figure(results),
        context_memory_figure(results),
        quantization_figure(results),
        operator_breakdown_figure(results),
        decode_roofline_figure(results),
        document_length_figure(results),
        goodput_rate_figure(results),
        forward_batch_figure(results),
        arch_pareto_figure(analysis),
    ]
    return [f for f in made if f is not None]


def write_figures(figures: Sequence[ReportFigure], directory: str | Path) -> list[Path]:
    """Write each figure as ``{id}.png`` (150 dpi) and ``{id}.svg`` (vector, for papers).

    Args:
        figures: from :func:`build_figures`.
        directory: created (with parents) if missing.

    Returns:
        The written paths, PNG then SVG of each figure in order.

    Raises:
        OSError: the directory cannot be created or a file cannot be written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fig in figures:
        for suffix, data in ((".png", fig.to_png()), (".svg", fig.to_svg())):
            path = out / f"{fig.id}{suffix}"
            path.write_bytes(data)
            paths.append(path)
    return paths
