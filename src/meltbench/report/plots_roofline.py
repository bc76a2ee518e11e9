"""The decode roofline: tok/s against bytes read per token, under the bandwidth roof."""

from __future__ import annotations

from collections.abc import Sequence

from meltbench.report.figure_base import (
    _MARKERS,
    _MIB,
    ReportFigure,
    _describe,
    _footnote,
    _mean_ci,
    _new_figure,
    _outside_legend,
    _quant_of,
    _split_common,
    _text,
)
from meltbench.results.schema import RunResult


def decode_roofline_figure(results: Sequence[RunResult]) -> ReportFigure | None:
    """Achieved decode speed under the memory-bandwidth bound (a roofline for decode).

    Args:
        results: runs; ok ones with ``decode_tps``, ``bytes_per_token`` and
            ``decode_bound_tps`` (:mod:`meltbench.measure.roofline`) are drawn.

    Returns:
        Figure ``decode-roofline``: log-log axes, x = bytes read per decoded token (MiB),
        y = decode tok/s; each distinct bandwidth is a roof line ``y = bandwidth / x``;
        each run a point (median, 95% CI bar) labelled with its efficiency; or None.
    """
    runs = [
        r
        for r in results
        if r.ok
        and r.metrics.get("decode_tps")
        and r.metrics.get("bytes_per_token")
        and r.metrics.get("decode_bound_tps")
    ]
    if not runs:
        return None
    fields = []
    for r in runs:
        depth = r.spec.workload.n_depth
        ident = r.identity()
        fields.append(
            {
                "model": ident.model,
                "quant": _quant_of(r),
                "engine": ident.engine,
                "threads": ident.threads,
                "depth": f"d{depth}",
            }
        )
    common, varying = _split_common(fields)
    shared = _describe(fields[0], common)
    cv = _new_figure(9.0, 4.8)
    ax = cv.main.subplots()
    xs = [r.metrics["bytes_per_token"].median / _MIB for r in runs]
    roofs = sorted({float((r.roofline or {}).get("bandwidth_bytes_per_s") or 0) for r in runs})
    lo, hi = min(xs) / 1.6, max(xs) * 1.6
    for k, bw in enumerate(b for b in roofs if b > 0):
        line_x = [lo, hi]
        ax.plot(
            line_x,
            [bw / (x * _MIB) for x in line_x],
            color="0.35",
            linestyle=("-", "--", ":", "-.")[k % 4],
            linewidth=1.2,
            label=f"roof: {bw / 1e9:.1f} GB/s",
        )
    for i, (r, x, f) in enumerate(zip(runs, xs, fields, strict=True)):
        m = r.metrics["decode_tps"]
        ci = _mean_ci(m)
        y = m.median
        err = None
        if ci is not None:
            err = [[max(y - ci[1], 0.0)], [max(ci[2] - y, 0.0)]]
        eff = r.metrics.get("decode_efficiency")
        label = _text(f"{r.run_id[:8]} {_describe(f, varying)}".strip(), 50)
        if eff is not None:
            label += f" ({eff.median:.0%} of roof)"
        ax.errorbar(
            [x],
            [y],
            yerr=err,
            marker=_MARKERS[i % len(_MARKERS)],
            linestyle="",
            capsize=3,
            color=f"C{i % 10}",
            label=label,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("bytes read per decoded token (MiB): weights + KV cache")
    ax.set_ylabel("decode tok/s")
    ax.grid(True, which="both", alpha=0.3)
    _outside_legend(cv.main, ax, 2)
    cv.main.suptitle(
        _text("Decode against the bandwidth roof" + (f" — {shared}" if shared else ""), 100)
    )
    run_ids = tuple(r.run_id for r in runs)
    _footnote(cv, run_ids)
    return ReportFigure(
        id="decode-roofline",
        title="Decode roofline",
        caption=(
            "Median decode tok/s (bars: 95% CI over repetitions) against the bytes read per "
            "decoded token: every weight once (the embedding table too when it is tied to "
            "the output layer), plus the KV cache attended at the mean decode position. "
            "Lines: the memory-bandwidth bound tok/s = bandwidth / bytes, with the read "
            "bandwidth measured on the target (meltbench bandwidth)."
            + (f" All runs: {shared}." if shared else "")
        ),
        run_ids=run_ids,
        figure=cv.fig,
    )
