"""The HTML report and its figures, on hand-built results (no engine, no browser)."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import matplotlib  # noqa: F401  (installed by the test set-up: fail, never skip)
import pytest

from meltbench.config import RunSpec
from meltbench.report.html import CSP, build_report
from meltbench.report.plots import (
    PLOT_IDS,
    build_figures,
    write_figures,
)
from tests.helpers import make_forward_result, make_result

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
# "$" would start matplotlib's mathtext; "-->" would end an SVG comment.
ODD = "cost $5 & $x^{ --> \"quoted\" 'single'"
CAUSE = 'MemoryError: <b>no</b> "memory" & more'
MIB = 2**20


def run_at(n_prompt: int, **overrides):
    spec = RunSpec.model_validate({"workload": {"n_prompt": n_prompt, "n_gen": 4, "reps": 3}})
    return make_result(spec=spec, test=spec.workload.label, **overrides)


def with_id(result, prefix: str):
    """A copy with a recognizable run id (8-char prefix shown in captions)."""
    return result.model_copy(update={"run_id": prefix + uuid.uuid4().hex[8:]})


@pytest.fixture(scope="module")
def full_set():
    """Runs that call for every figure: a context curve (3 lengths) whose model has a
    malicious name, a failed run at a longer prompt, two quant types, a profiled run."""
    evil_model = {"name": EVIL, "quant": "Q8_0", "size_bytes": 300 * MIB, "n_params": 1e8}
    curve = [with_id(run_at(n, model=evil_model), f"c{n:07d}") for n in (8, 16, 32)]
    failed = with_id(
        run_at(
            64,
            status="failed",
            failure=CAUSE,
            model=evil_model,
            metrics={},
            memory={"peak_rss_bytes": 900 * MIB},
            warnings=[
                {"code": "few_reps", "message": "<i>few</i>", "advice": "a&b", "metric": None}
            ],
        ),
        "f0000064",
    )
    quant = with_id(
        run_at(8, model={"name": EVIL, "quant": "Q4_0", "size_bytes": 160 * MIB}), "q4000000"
    )
    profiled = with_id(
        run_at(
            8,
            model={"name": ODD, "quant": "F16"},
            profile={
                "categories_ms": {"gemm": 12.5, "attention": 3.0, "norm": 0.5, "other": 1.0},
                "ops": [{"name": "aten::addmm", "category": "gemm", "ms": 12.5, "count": 4}],
                "source": "torch.profiler <cpu>",
            },
        ),
        "p0000000",
    )
    curve = [with_roofline(r, bandwidth=20e9) for r in curve]
    docs = [with_id(request_run("document", doc_tokens=n, ttft=n / 10), f"d{n:07d}")
            for n in (1024, 2048)]  # fmt: skip
    loads = [with_id(request_run("app", request_rate=r, ttft=100.0 * r), f"r{int(r):07d}")
             for r in (1.0, 4.0)]  # fmt: skip
    forward = [with_id(make_forward_result(b, [b * 1.0, b * 1.2, b * 1.1], engine=e),
                       f"{e[:3]}{b:05d}")
               for e in ("torch", "onnxruntime") for b in (1, 4)]  # fmt: skip
    return [*curve, failed, quant, profiled, *docs, *loads, *forward]


def request_run(kind: str, *, ttft: float, **workload):
    """A request-workload run built by hand: its TTFT, peak memory and load figures."""
    from meltbench.measure.stats import summarize

    spec = RunSpec.model_validate({"workload": {"kind": kind, "n_gen": 8, **workload}})
    metrics = {
        "ttft_ms": summarize([ttft, ttft * 1.5]),
        "request_throughput_rps": summarize([0.8]),
        "goodput_rps": summarize([0.4]),
        "slo_attainment": summarize([0.5]),
    }
    section = {"workload": {"kind": kind, "name": "t"}, "groups": [], "records": []}
    return make_result(spec=spec, test=f"{kind}:t@0", metrics=metrics, requests=section,
                       memory={"peak_rss_bytes": 400 * MIB})  # fmt: skip


def with_roofline(result, bandwidth: float):
    """A copy with the roofline metrics of a 250 MB-per-token model under ``bandwidth``."""
    from meltbench.measure.roofline import roofline
    from meltbench.measure.stats import summarize

    decode = result.metrics["decode_tps"]
    r = roofline(240e6, 10e6, bandwidth, decode.median)
    metrics = {
        **result.metrics,
        "bytes_per_token": summarize([r.bytes_per_token]),
        "decode_bound_tps": summarize([r.decode_bound_tps]),
        "decode_efficiency": summarize([v / r.decode_bound_tps for v in decode.samples]),
        "kv_cache_bytes": summarize([9 * MIB]),
    }
    section = {"bandwidth_bytes_per_s": bandwidth, "decode_bound_tps": r.decode_bound_tps}
    return result.model_copy(update={"metrics": metrics, "roofline": section})


SWEEP = {
    "sweep_id": "abcdef0123456789",
    "name": "ctx <sweep>",
    "created_at": "2026-11-21T10:00:00+00:00",
    "source": "/tmp/<exp>.yaml",
    "points": [{}, {}, {}],
    "analysis": {
        "scaling": [
            {
                "group": {"model": EVIL, "quant": "Q8_0", "engine": "llama.cpp", "dtype": None,
                          "threads": 2, "n_gen": 4, "n_depth": 0},
                "x": "n_prompt",
                "metric": "decode_tps",
                "exponent": -0.0312,
                "exponent_se": 0.01,
                "ci95_low": -0.08,
                "ci95_high": 0.015,
                "r_squared": 0.81,
                "n": 3,
                "x_min": 8.0,
                "x_max": 32.0,
                "verdict": "constant",
            }
        ],
        "max_context": [
            {
                "group": {"model": None, "engine": None, "threads": 2},
                "largest_ok": 256,
                "smallest_failed": 288,
                "converged": True,
                "summary": "largest n_prompt that runs: 256 (288 failed: <oom>)",
                "probes": [[1024, False, "MemoryError"], [256, True, None], [288, False, "x"]],
            }
        ],
        "arch_search": {
            "space": EVIL, "quant": "Q4_0", "engine": "llama.cpp",
            "targets": [{
                "target": EVIL,
                "candidates": [
                    {"key": k, "n_params": n, "run_ids": [],
                     "measured": {"decode_ms": d, "prefill_ms": 10 * d, "peak_rss_bytes": n},
                     "predicted": {"decode_ms": d * 1.1, "prefill_ms": 11 * d}}
                    for k, n, d in (("a", 10**7, 1.0), ("b", 2 * 10**7, 0.9), ("c", 3 * 10**7, 2.0))
                ],
                "fits": {"decode": {"cv_mape": 7.5}},
                "fronts": {"decode_ms": ["b", "c"], "prefill_ms": ["b", "c"]},
                "predicted_fronts": {"decode_ms": ["b", "c"]},
            }],
        },
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def full_report(full_set) -> str:
    return build_report(full_set, title=f"report of {EVIL}", sweep=SWEEP)


def plot_ids(page: str) -> set[str]:
    return set(re.findall(r"<figure class='plot' id='plot-([a-z-]+)'", page))


def test_malicious_strings_appear_escaped_and_never_raw(full_report):
    assert EVIL_ESCAPED in full_report
    assert "<script" not in full_report.lower()
    assert "alert(1)</" not in full_report
    assert "<b>no</b>" not in full_report and "&lt;b&gt;no&lt;/b&gt;" in full_report
    assert "<i>few</i>" not in full_report and "&lt;i&gt;few&lt;/i&gt;" in full_report
    assert "&lt;sweep&gt;" in full_report and "/tmp/&lt;exp&gt;.yaml" in full_report
    # quotes are escaped too, so the strings are also safe inside attributes
    assert "cost $5 &amp; $x^{ --&gt; &quot;quoted&quot; &#x27;single&#x27;" in full_report


def test_report_references_nothing_outside_itself(full_report):
    assert not re.search(r"""(?i)\b(src|href)\s*=\s*["']?\s*(https?:|//|file:|ftp:)""", full_report)
    assert not re.search(r"(?i)url\(\s*['\"]?\s*(https?:|//)", full_report)
    assert "<link" not in full_report.lower() and "@import" not in full_report.lower()
    srcs = re.findall(r"""\bsrc\s*=\s*['"]([^'"]*)""", full_report)
    assert srcs and all(s.startswith("data:image/svg+xml;base64,") for s in srcs)
    hrefs = re.findall(r"""\bhref\s*=\s*['"]([^'"]*)""", full_report)
    assert hrefs and all(h.startswith("#") for h in hrefs)
    assert f'content="{CSP}"' in full_report
    assert "default-src 'none'" in CSP


def test_every_plot_the_data_call_for_is_present(full_report):
    assert plot_ids(full_report) == set(PLOT_IDS)
    assert "Not drawn for these runs" not in full_report


def test_plots_the_data_do_not_support_are_absent_and_explained():
    page = build_report([run_at(8)], title="one run")
    assert plot_ids(page) == {"latency-distributions"}
    for absent in (
        "tps-vs-context",
        "memory-vs-context",
        "quant-speed-size",
        "operator-breakdown",
        "decode-roofline",
    ):
        assert f"<li><b>{absent}</b>: needs" in page
    assert "Sweep analysis" not in page  # no sweep given


def test_failed_run_cause_and_status_are_shown(full_report):
    assert "MemoryError: &lt;b&gt;no&lt;/b&gt; &quot;memory&quot; &amp; more" in full_report
    assert "1 of 14 run(s) failed" in full_report
    assert "<tr class='failed'><td>f0000064</td><td>failed</td>" in full_report


def test_summary_table_reuses_bench_rows(full_report, full_set):
    from meltbench.results.tables import bench_rows

    for col in ("model", "size", "t/s", "TTFT ms", "ITL p99 ms", "peak RSS"):
        assert f"<th>{col}</th>" in full_report
    for row in bench_rows(full_set[0]):
        assert f"<td class='num'>{row['t/s']}</td>" in full_report
    for col in ("items/s", "p50 ms", "cold ms", "max |Δ|"):  # forward runs' own columns
        assert f"<th>{col}</th>" in full_report
    assert "<td>encode-b4-s16</td>" in full_report


def test_environment_and_versions_are_shown(full_report):
    from meltbench import __version__

    assert f"by meltbench {__version__}" in full_report
    assert "<h3>Environment 1</h3>" in full_report
    assert "<td>CPU</td><td>Test CPU</td>" in full_report


def test_sweep_analysis_tables(full_report):
    assert "Scaling with context" in full_report
    assert "<td class='num'>-0.031</td>" in full_report
    assert "<td>constant</td>" in full_report
    assert "largest n_prompt that runs: 256 (288 failed: &lt;oom&gt;)" in full_report
    assert "1024 failed, 256 ok, 288 failed" in full_report


def test_energy_and_temperature_are_said_to_be_not_measured(full_report):
    section = full_report.split("<section id='not-measured'>")[1]
    assert "energy and power" in section and "temperature" in section
    assert "energy" not in " ".join(plot_ids(full_report))


def test_figures_name_their_runs_and_units(full_set):
    figures = {f.id: f for f in build_figures(full_set, SWEEP["analysis"])}
    assert list(figures) == list(PLOT_IDS)
    ctx = figures["tps-vs-context"]
    assert ctx.short_ids == ["c0000008", "c0000016", "c0000032"]
    assert figures["memory-vs-context"].short_ids[-1] == "f0000064"  # failed, as a cross
    assert set(figures["quant-speed-size"].short_ids) >= {"q4000000", "c0000008"}
    assert figures["operator-breakdown"].short_ids == ["p0000000"]
    assert "accuracy" in figures["quant-speed-size"].caption.lower()
    assert "torch.profiler <cpu>" in figures["operator-breakdown"].caption
    roof = figures["decode-roofline"]
    assert roof.short_ids == ["c0000008", "c0000016", "c0000032"]
    assert "bandwidth" in roof.caption
    ax = roof.figure.subfigs[0].axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert "tok/s" in ax.get_ylabel() and "bytes" in ax.get_xlabel()
    assert any("20.0 GB/s" in t.get_text() for t in roof.figure.subfigs[0].legends[0].get_texts())
    axes = ctx.figure.subfigs[0].axes
    assert [a.get_xscale() for a in axes] == ["log", "log"]
    assert "tok/s" in axes[0].get_ylabel() and "tokens" in axes[0].get_xlabel()
    assert "(b=-0.03, constant)" in " ".join(
        t.get_text() for t in ctx.figure.subfigs[0].legends[0].texts
    )
    mem_axes = figures["memory-vs-context"].figure.subfigs[0].axes[0]
    assert mem_axes.get_ylabel() == "peak RSS (MiB)"
    lat = figures["latency-distributions"].figure.subfigs[0].axes
    assert [a.get_xlabel() for a in lat] == ["TTFT (ms)", "inter-token latency (ms)"]
    fwd = figures["latency-vs-batch"]
    assert fwd.short_ids == ["tor00001", "tor00004", "onn00001", "onn00004"]
    l_ax, t_ax = fwd.figure.subfigs[0].axes
    assert l_ax.get_xscale() == "log" and "batch" in l_ax.get_xlabel()
    assert (l_ax.get_ylabel(), t_ax.get_ylabel()) == ("latency per pass (ms)", "items/s")
    medians = [list(line.get_ydata()) for line in l_ax.get_lines() if len(line.get_ydata()) == 2]
    assert [1.1, 4.4] in [[round(v, 6) for v in m] for m in medians]  # median of 1, 1.2, 1.1
    docs = figures["ttft-vs-document-length"]
    assert docs.short_ids == ["d0001024", "d0002048"]
    t_ax, m_ax = docs.figure.subfigs[0].axes
    assert (t_ax.get_ylabel(), m_ax.get_ylabel()) == ("TTFT (ms)", "peak RSS (MiB)")
    assert list(t_ax.lines[0].get_ydata()) == [128.0, 256.0]  # medians of (x, 1.5x)
    load = figures["goodput-vs-request-rate"]
    assert load.short_ids == ["r0000001", "r0000004"]
    g_ax, s_ax = load.figure.subfigs[0].axes
    assert list(s_ax.lines[0].get_ydata()) == [50.0, 50.0]
    assert "goodput" in load.caption and "request rate" in g_ax.get_xlabel()


def test_write_figures_png_and_svg_without_user_text(tmp_path, full_set):
    figures = build_figures(full_set)
    paths = write_figures(figures, tmp_path / "figs")
    assert [p.name for p in paths[:2]] == ["tps-vs-context.png", "tps-vs-context.svg"]
    assert len(paths) == 2 * len(figures)
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert b"<svg" in data and b"<script" not in data and b"alert" not in data
            assert b"<!DOCTYPE" not in data and b"<!--" not in data


def test_empty_results_give_a_report_that_says_so():
    page = build_report([], title="nothing")
    assert "0 run(s), 0 failed" in page and "No runs." in page
    assert plot_ids(page) == set()


def test_plotting_is_not_imported_by_meltbench():
    code = (
        "import sys, meltbench, meltbench.api, meltbench.cli, meltbench.report.html, "
        "meltbench.report.plots; print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
