"""One self-contained HTML report of stored runs (SPEC capability 9).

The file has everything inline: CSS in a ``<style>`` element and the figures of
:mod:`meltbench.report.plots` as ``data:image/svg+xml`` images (vector; an SVG inside
``<img>`` runs no script and loads nothing). It has no JavaScript, loads no font, style
sheet or image from anywhere, and says so to the browser with a Content-Security-Policy
(``default-src 'none'; img-src data:; style-src 'unsafe-inline'``), so it can be opened
offline, mailed, or attached to a CI job as is.

Sections, in order: header (title, generation time, meltbench version, sweep), one
block per distinct environment (CPU, cores, RAM, OS, kernel, Python, library versions)
and the engines used, the results table in llama-bench's layout
(:func:`meltbench.results.tables.bench_rows`) with each run's status, per-run statistics
(mean with 95% CI, ITL percentiles, cold request, agreement with the engine's counters),
failed runs with their causes, warnings, the sweep analysis (context-scaling fits and
max-context searches) when a sweep is given, the figures, and what is not measured.

Every string that comes from a run (model, prompt, file and device names, failure causes,
warnings, environment) goes through :func:`html.escape` (quotes included, so attributes
are safe too); the figures draw text as paths, with ``$`` escaped against mathtext.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meltbench.measure.stats import Summary
from meltbench.results.schema import RunResult
from meltbench.results.tables import NUMERIC_COLUMNS, bench_columns, bench_rows, format_bytes

__all__ = ["CSP", "build_report"]

#: Content-Security-Policy of the report: nothing may be fetched, no script may run.
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0 auto; max-width: 1400px; padding: 1rem 1.5rem 3rem; color: #1b1b1b;
  line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem;
  margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin-bottom: .3rem; }
.meta { color: #555; margin-top: 0; }
nav a { margin-right: .9rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .86rem; }
th, td { border: 1px solid #d4d4d4; padding: .22rem .5rem; text-align: left;
  vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mono, span.mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
tr.failed td { background: #fff1f0; }
.status-failed { color: #b00020; font-weight: 600; }
.status-ok { color: #1b6e20; }
.scroll { overflow-x: auto; }
.env { display: inline-block; vertical-align: top; margin-right: 1.5rem; }
figure.plot { margin: 1.2rem 0 2rem; border: 1px solid #e0e0e0; padding: .6rem;
  background: #fff; }
figure.plot img { width: 100%; max-width: 1100px; height: auto; display: block; }
figcaption { font-size: .88rem; color: #333; margin-top: .4rem; }
.note { background: #f7f7f7; border-left: 4px solid #999; padding: .4rem .8rem; }
footer { margin-top: 3rem; color: #777; font-size: .8rem; }
"""


def _e(value: object) -> str:
    """HTML-escaped text of any value (quotes too, so it is safe in attributes);
    ``None`` is empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def _short(run_id: str) -> str:
    return run_id[:8]


def _table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    num: Iterable[int] = (),
    row_classes: Sequence[str] | None = None,
    raw: Iterable[int] = (),
) -> str:
    """An HTML table; every cell is escaped except columns in ``raw`` (already HTML)."""
    num_cols, raw_cols = set(num), set(raw)
    out = ["<div class='scroll'><table><thead><tr>"]
    out += [f"<th>{_e(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        out.append(f"<tr class='{_e(cls)}'>" if cls else "<tr>")
        for j, cell in enumerate(row):
            text = str(cell) if j in raw_cols else _e(cell)
            out.append(f"<td class='num'>{text}</td>" if j in num_cols else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _mean_ci(summary: Summary | None, digits: int = 2) -> str:
    """``mean [ci95_low, ci95_high]``, or the mean alone when there is no CI."""
    if summary is None:
        return ""
    if summary.ci95_low is None or summary.ci95_high is None:
        return f"{summary.mean:.{digits}f}"
    return (
        f"{summary.mean:.{digits}f} [{summary.ci95_low:.{digits}f}, {summary.ci95_high:.{digits}f}]"
    )


# ---------------------------------------------------------------------------------------
# Sections


def _header(
    title: str,
    results: Sequence[RunResult],
    sweep: Mapping[str, Any] | None,
    generated_at: _dt.datetime,
) -> str:
    from meltbench import __version__

    n_failed = sum(1 for r in results if not r.ok)
    started = sorted(r.started_at for r in results)
    span = f", measured {started[0][:19]} to {started[-1][:19]} UTC" if started else ""
    parts = [
        f"<h1>{_e(title)}</h1>",
        "<p class='meta'>Generated "
        f"{_e(generated_at.astimezone(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S'))} UTC "
        f"by meltbench {_e(__version__)} &middot; {len(results)} run(s), "
        f"{n_failed} failed{_e(span)}</p>",
    ]
    if sweep and sweep.get("sweep_id"):
        parts.append(
            "<p class='meta'>Sweep "
            f"<b>{_e(sweep.get('name'))}</b> <span class='mono'>{_e(sweep.get('sweep_id'))}</span>"
            f" created {_e(sweep.get('created_at'))}"
            + (f" from {_e(sweep.get('source'))}" if sweep.get("source") else "")
            + (
                f" (SHA-256 {_e(str(sweep.get('source_sha256'))[:16])}…)"
                if sweep.get("source_sha256")
                else ""
            )
            + (
                f", {len(sweep.get('points') or [])} planned point(s)"
                if sweep.get("points") is not None
                else ""
            )
            + "</p>"
        )
    links = [
        ("environment", "Environment"),
        ("results", "Results"),
        ("details", "Statistics"),
        ("failures", "Failures"),
        ("warnings", "Warnings"),
    ]
    if sweep:
        links.append(("sweep-analysis", "Sweep analysis"))
    links += [("plots", "Plots"), ("not-measured", "Not measured")]
    parts.append("<nav>" + "".join(f"<a href='#{a}'>{_e(t)}</a>" for a, t in links) + "</nav>")
    return "<header>" + "".join(parts) + "</header>"


def _environment_key(env: Mapping[str, Any]) -> str:
    return json.dumps(env, sort_keys=True, default=str)


def _environment_rows(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    physical = env.get("cpu_count_physical")
    logical = env.get("cpu_count_logical")
    cores = ""
    if physical or logical:
        cores = f"{physical if physical is not None else '?'} physical, "
        cores += f"{logical if logical is not None else '?'} logical"
    os_name = env.get("os_release") or env.get("os")
    python = " ".join(str(x) for x in (env.get("python_implementation"), env.get("python")) if x)
    git = env.get("git") or {}
    git_text = ""
    if isinstance(git, Mapping) and git.get("commit"):
        git_text = str(git["commit"])[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    rows = [
        ("host", env.get("hostname")),
        ("CPU", env.get("cpu_model")),
        ("cores", cores),
        ("RAM", format_bytes(env.get("ram_total_bytes"))),
        ("OS", os_name),
        ("kernel", env.get("kernel")),
        ("machine", env.get("machine")),
        ("CPU governor", env.get("cpu_governor")),
        ("Python", python),
        ("meltbench", env.get("meltbench_version")),
        ("meltbench git", git_text),
    ]
    libs = env.get("libraries") or {}
    if isinstance(libs, Mapping):
        for name in sorted(libs):
            if name == "meltbench" and libs[name] == env.get("meltbench_version"):
                continue
            rows.append((str(name), libs[name] if libs[name] is not None else "not installed"))
    known = {
        "hostname", "cpu_model", "cpu_count_physical", "cpu_count_logical", "ram_total_bytes",
        "os", "os_release", "kernel", "machine", "cpu_governor", "python",
        "python_implementation", "python_executable", "meltbench_version", "git", "libraries",
    }  # fmt: skip
    for key in sorted(set(env) - known):
        value = env[key]
        if value is not None and not isinstance(value, (dict, list)):
            rows.append((str(key), value))
    return [(k, "" if v is None else str(v)) for k, v in rows if v not in (None, "")]


def _environments(results: Sequence[RunResult]) -> str:
    groups: dict[str, tuple[Mapping[str, Any], list[str]]] = {}
    for r in results:
        key = _environment_key(r.environment)
        groups.setdefault(key, (r.environment, []))[1].append(r.run_id)
    out = ["<section id='environment'><h2>Environment</h2>"]
    if not groups:
        out.append("<p>No runs.</p>")
    for i, (env, ids) in enumerate(groups.values(), 1):
        which = (
            f"all {len(ids)} run(s)"
            if len(groups) == 1
            else f"{len(ids)} run(s): " + " ".join(_short(x) for x in ids)
        )
        out.append(f"<div class='env'><h3>Environment {i}</h3><p class='meta'>{_e(which)}</p>")
        rows = _environment_rows(env)
        out.append(_table(("field", "value"), rows) if rows else "<p>not recorded</p>")
        out.append("</div>")
    engines: dict[str, list[str]] = {}
    fields = ("name", "library", "version", "torch_version", "device", "dtype")
    for r in results:
        eng = r.engine or {"name": r.spec.engine.name}
        if len(eng) <= 1 and not r.ok:  # a failed run's engine never started
            continue
        row = tuple(str(eng.get(f)) if eng.get(f) is not None else "" for f in fields)
        engines.setdefault(json.dumps(row), []).append(r.run_id)
    if engines:
        out.append("<h3>Engines</h3>")
        rows = []
        for key, ids in engines.items():
            rows.append([*json.loads(key), " ".join(_short(x) for x in ids)])
        out.append(_table((*fields, "runs"), rows))
    out.append("</section>")
    return "".join(out)


def _results_table(results: Sequence[RunResult]) -> str:
    columns = bench_columns(list(results))
    header = ("run", "status", *columns)
    rows, classes = [], []
    for r in results:
        for row in bench_rows(r):
            rows.append([_short(r.run_id), r.status, *(row[c] for c in columns)])
            classes.append("" if r.ok else "failed")
    num = [i for i, c in enumerate(header) if c in NUMERIC_COLUMNS]
    body = _table(header, rows, num=num, row_classes=classes) if rows else "<p>No runs.</p>"
    return (
        "<section id='results'><h2>Results</h2>"
        "<p class='meta'>llama-bench layout: t/s is mean ± standard deviation over the "
        "timed repetitions; TTFT and ITL are medians (ITL p99: 99th percentile of every "
        "gap between tokens); peak RSS is the worker's peak resident memory.</p>"
        + body
        + "</section>"
    )


def _details(results: Sequence[RunResult]) -> str:
    header = (
        "run",
        "test",
        "TTFT ms",
        "prefill tok/s",
        "decode tok/s",
        "ITL p50 / p90 / p99 ms",
        "e2e ms",
        "load ms",
        "cold TTFT ms",
        "ours / engine",
        "n",
    )
    rows = []
    for r in results:
        m = r.metrics
        itl = m.get("itl_ms")
        load = m.get("load_ms")
        e2e = m.get("e2e_ms")
        ttft = m.get("ttft_ms")
        fid = ", ".join(
            f"{k.replace('_tps', '')} {v:.3f}" for k, v in r.fidelity.items() if v is not None
        )
        rows.append(
            [
                _short(r.run_id),
                r.test,
                _mean_ci(ttft),
                _mean_ci(m.get("prefill_tps")),
                _mean_ci(m.get("decode_tps")),
                f"{itl.median:.2f} / {itl.p90:.2f} / {itl.p99:.2f}" if itl else "",
                _fmt(e2e.median if e2e else None),
                _fmt(load.mean if load else None, 1),
                _fmt(r.cold.get("ttft_ms")),
                fid,
                str(ttft.n) if ttft else "0",
            ]
        )
    body = _table(header, rows, num=range(2, 11)) if rows else "<p>No runs.</p>"
    return (
        "<section id='details'><h2>Statistics</h2>"
        "<p class='meta'>Mean [95% confidence interval of the mean, Student's t] over the "
        "timed repetitions; e2e is the median; cold TTFT is the very first request; "
        "ours / engine is our tok/s divided by the engine's own counters; n is the "
        "number of timed repetitions.</p>" + body + "</section>"
    )


def _failures(results: Sequence[RunResult]) -> str:
    failed = [r for r in results if not r.ok]
    out = ["<section id='failures'><h2>Failures</h2>"]
    if not failed:
        out.append("<p>No run failed.</p>")
    else:
        rows = [
            [
                _short(r.run_id),
                r.test,
                " ".join(str(x) for x in (r.model.get("name"), r.model.get("quant")) if x)
                or r.spec.model.ref,
                r.engine.get("name", r.spec.engine.name),
                r.failure or "no cause recorded",
            ]
            for r in failed
        ]
        out.append(
            f"<p>{len(failed)} of {len(results)} run(s) failed; each is stored with its "
            "cause and the repetitions it completed.</p>"
        )
        out.append(
            _table(
                ("run", "test", "model", "engine", "cause"),
                rows,
                row_classes=["failed"] * len(rows),
            )
        )
    out.append("</section>")
    return "".join(out)


def _warnings(results: Sequence[RunResult]) -> str:
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for r in results:
        for w in r.warnings:
            key = (
                str(w.get("code") or ""),
                str(w.get("message") or ""),
                str(w.get("advice") or ""),
                str(w.get("metric") or ""),
            )
            grouped.setdefault(key, []).append(r.run_id)
    out = ["<section id='warnings'><h2>Warnings</h2>"]
    if not grouped:
        out.append("<p>No warnings.</p>")
    else:
        rows = [
            [code, message, advice, metric, " ".join(_short(x) for x in ids)]
            for (code, message, advice, metric), ids in grouped.items()
        ]
        out.append(_table(("code", "message", "advice", "metric", "runs"), rows))
    out.append("</section>")
    return "".join(out)


_GROUP_SHOWN = ("model", "quant", "weights", "engine", "dtype", "device", "threads")


def _group_text(group: Mapping[str, Any] | None) -> str:
    if not isinstance(group, Mapping):
        return ""
    parts = []
    for key in (*_GROUP_SHOWN, *(k for k in group if k not in _GROUP_SHOWN)):
        if key in ("model_path", "target") or group.get(key) is None:
            continue
        parts.append(f"{key}={group[key]}")
    return ", ".join(parts)


def _number(value: object, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "" if value is None else str(value)


_SCALING_HEADER = (
    "configuration", "metric", "x", "b", "95% CI of b", "R²", "n", "x range", "verdict",
)  # fmt: skip
_SEARCH_HEADER = (
    "configuration", "largest ok n_prompt", "smallest failed", "converged", "summary",
    "probes (in order)",
)  # fmt: skip


def _sweep_analysis(sweep: Mapping[str, Any]) -> str:
    analysis = sweep.get("analysis") if "analysis" in sweep else sweep
    analysis = analysis if isinstance(analysis, Mapping) else {}
    out = ["<section id='sweep-analysis'><h2>Sweep analysis</h2>"]
    scaling = analysis.get("scaling") or []
    out.append("<h3>Scaling with context (power law y = a · x<sup>b</sup>)</h3>")
    if scaling:
        rows = []
        for row in scaling:
            rows.append(
                [
                    _group_text(row.get("group")),
                    row.get("metric"),
                    row.get("x"),
                    _number(row.get("exponent")),
                    f"[{_number(row.get('ci95_low'))}, {_number(row.get('ci95_high'))}]",
                    _number(row.get("r_squared")),
                    row.get("n"),
                    f"{_number(row.get('x_min'), 0)}–{_number(row.get('x_max'), 0)}",
                    row.get("verdict"),
                ]
            )
        out.append(
            _table(
                _SCALING_HEADER,
                rows,
                num=(3, 4, 5, 6, 7),
            )
        )
        out.append(
            "<p class='meta'>b is the exponent of a least-squares fit in log-log space "
            "(meltbench.measure.scaling): 0 constant, 1 linear, 2 quadratic in the number of "
            "tokens; rates (tok/s) have minus the exponent of the time per token.</p>"
        )
    else:
        out.append(
            "<p>No scaling fit: a fit needs one configuration at >= 3 prompt or context "
            "lengths.</p>"
        )
    searches = analysis.get("max_context")
    if searches:
        out.append("<h3>Largest context that runs</h3>")
        rows = []
        for s in searches:
            probes = []
            for probe in s.get("probes") or []:
                try:
                    n, ok = probe[0], probe[1]
                except (IndexError, KeyError, TypeError):
                    continue
                probes.append(f"{n} {'ok' if ok else 'failed'}")
            rows.append(
                [
                    _group_text(s.get("group")),
                    s.get("largest_ok") if s.get("largest_ok") is not None else "none",
                    s.get("smallest_failed") if s.get("smallest_failed") is not None else "",
                    "yes" if s.get("converged") else "no",
                    s.get("summary"),
                    ", ".join(probes),
                ]
            )
        out.append(
            _table(
                _SEARCH_HEADER,
                rows,
                num=(1, 2),
            )
        )
    out.append("</section>")
    return "".join(out)


def _plots(figures: Sequence[Any]) -> str:
    from meltbench.report.plots import PLOT_IDS, PLOT_NEEDS

    out = ["<section id='plots'><h2>Plots</h2>"]
    if not figures:
        out.append("<p>No plot fits these runs.</p>")
    for fig in figures:
        data = base64.b64encode(fig.to_svg()).decode("ascii")
        ids = " ".join(fig.short_ids)
        out.append(
            f"<figure class='plot' id='plot-{_e(fig.id)}'>"
            f"<img alt='{_e(fig.title)}' src='data:image/svg+xml;base64,{data}'>"
            f"<figcaption><b>{_e(fig.title)}.</b> {_e(fig.caption)} "
            f"Runs: <span class='mono'>{_e(ids)}</span></figcaption></figure>"
        )
    present = {f.id for f in figures}
    absent = [i for i in PLOT_IDS if i not in present]
    if absent:
        out.append("<h3>Not drawn for these runs</h3><ul>")
        out += [f"<li><b>{_e(i)}</b>: needs {_e(PLOT_NEEDS[i])}</li>" for i in absent]
        out.append("</ul>")
    out.append("</section>")
    return "".join(out)


def _not_measured(results: Sequence[RunResult]) -> str:
    from meltbench.report.plots import NOT_PLOTTED

    items = []
    for name, metrics in NOT_PLOTTED.items():
        having = [r for r in results if any(m in r.metrics for m in metrics)]
        if having:
            ids = " ".join(_short(r.run_id) for r in having)
            text = (
                f"measured in {len(having)} of {len(results)} runs ({ids}): their values are "
                "in each run's metrics table; this report does not plot them yet"
            )
        elif name == "accuracy":
            text = "no run carries perplexity or KL divergence (meltbench eval, quant-study)"
        else:
            text = (
                "no run carries it: the targets had no such sensor (meltbench sensors says "
                "which are missing and why)"
            )
        items.append(f"<li><b>{_e(name)}</b>: {_e(text)}.</li>")
    return (
        "<section id='not-measured'><h2>Not measured or not plotted</h2><div class='note'>"
        f"<ul>{''.join(items)}</ul></div></section>"
    )


def build_report(
    results: Sequence[RunResult],
    *,
    title: str,
    sweep: Mapping[str, Any] | None = None,
    figures: Sequence[Any] | None = None,
    generated_at: _dt.datetime | None = None,
) -> str:
    """Render runs as one self-contained HTML document.

    Args:
        results: the runs to report, in the order to show them (e.g.
            ``ResultStore.sweep_results(id)`` or ``[store.get(i) for i in ids]``); may be
            empty (the report then says so).
        title: the page title and heading (escaped).
        sweep: ``ResultStore.get_sweep(id)`` (``sweep_id``, ``name``, ``created_at``,
            ``source``, ``points``, ``analysis`` with ``scaling`` and ``max_context``
            rows), or a bare analysis dict; adds the sweep line and the "Sweep analysis"
            section, and the fits' exponents to the throughput legend.
        figures: figures already made by :func:`meltbench.report.plots.build_figures`
            (e.g. to also write them as PNG/SVG files); made here when None.
        generated_at: the time shown as generation time (default: now, UTC).

    Returns:
        The HTML document (UTF-8 text; figures inline as base64 SVG data URIs, about
        100-400 KB each). No script, no external resource.

    Raises:
        ImportError: matplotlib is missing (``pip install 'meltbench[report]'``).
    """
    if figures is None:
        from meltbench.report.plots import build_figures

        analysis = None
        if sweep:
            analysis = sweep.get("analysis") if "analysis" in sweep else sweep
        figures = build_figures(results, analysis if isinstance(analysis, Mapping) else None)
    now = generated_at or _dt.datetime.now(_dt.timezone.utc)
    sections = [
        _header(title, results, sweep, now),
        _environments(results),
        _results_table(results),
        _details(results),
        _failures(results),
        _warnings(results),
        _sweep_analysis(sweep) if sweep else "",
        _plots(figures),
        _not_measured(results),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta name='generator' content='meltbench'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(s for s in sections if s)
        + "\n<footer>Made by meltbench. Raw samples of every run are in the results "
        "database; <span class='mono'>meltbench results show ID</span> prints one run."
        "</footer>\n</body></html>\n"
    )
