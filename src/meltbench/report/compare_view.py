"""``meltbench compare``'s output: the rich table and the Markdown table of a comparison."""

from __future__ import annotations

from typing import Any

from meltbench.results.compare import Comparison, show_value, summary_line
from meltbench.results.significance import MetricComparison

__all__ = ["render_markdown", "render_table"]


def _fmt_value(metric: str, value: float) -> str:
    if metric.endswith("_bytes"):
        from meltbench.results.tables import format_bytes

        return format_bytes(value)
    return f"{value:.2f}"


def _cells(m: MetricComparison) -> list[str]:
    ratio = "-" if m.ratio is None else f"{m.ratio:.3f}"
    ci = "-" if m.ci_low is None or m.ci_high is None else f"[{m.ci_low:.3f}, {m.ci_high:.3f}]"
    if m.p_value is None:
        p = "-"
    elif m.p_value < 0.001:
        p = "<0.001"
    else:
        p = f"{m.p_value:.3f}"
    arrow = "↑" if m.direction > 0 else "↓"
    return [
        f"{m.metric} {arrow}",
        f"{_fmt_value(m.metric, m.base_median)} (n={m.n_base})",
        f"{_fmt_value(m.metric, m.candidate_median)} (n={m.n_candidate})",
        ratio,
        ci,
        p,
        m.verdict,
    ]


_COLUMNS = ("point", "metric", "base median", "candidate median", "ratio", "95% CI", "p", "verdict")


def _forced_text(forced: dict[str, tuple[Any, Any]]) -> str:
    if not forced:
        return "forced comparison: the two points have the same identity"
    diffs = ", ".join(f"{f} {show_value(b)} vs {show_value(c)}" for f, (b, c) in forced.items())
    return f"warning: forced comparison of points that differ in {diffs} (base vs candidate)"


def _unmatched_lines(comparison: Comparison) -> list[str]:
    lines = []
    for side, points in (("base", comparison.only_base), ("candidate", comparison.only_candidate)):
        for p in points:
            runs = ", ".join(r[:8] for r in p.run_ids)
            lines.append(f"only in {side} (not compared): {p.label} (run {runs})")
    return lines


def render_table(comparison: Comparison, console: Any) -> None:
    """Print the comparison as a rich table on ``console`` (a ``rich.console.Console``):
    regressions in bold red, improvements in green; then the unmatched points and the
    summary line."""
    from rich.table import Table
    from rich.text import Text

    if comparison.forced is not None:
        console.print(Text(_forced_text(comparison.forced), style="yellow"))
    table = Table(header_style="bold")
    for col in _COLUMNS:
        table.add_column(col, justify="right" if col in ("ratio", "p") else "left")
    styles = {"regressed": "bold red", "improved": "green"}
    for i, pc in enumerate(comparison.points):
        if i:
            table.add_section()
        for j, m in enumerate(pc.metrics):
            label = pc.label if j == 0 else ""
            table.add_row(label, *_cells(m), style=styles.get(m.verdict))
        if not pc.metrics:
            table.add_row(pc.label, "(no metric with samples on both sides)")
    console.print(table)
    for line in _unmatched_lines(comparison):
        console.print(line, highlight=False)
    style = "bold red" if comparison.exit_code else "bold"
    console.print(Text(summary_line(comparison), style=style))


def render_markdown(comparison: Comparison) -> str:
    """The comparison as GitHub Markdown: a table (regressions in bold), the unmatched
    points, the summary line."""

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = []
    if comparison.forced is not None:
        lines += [f"> {_forced_text(comparison.forced)}", ""]
    lines.append("| " + " | ".join(_COLUMNS) + " |")
    lines.append("| " + " | ".join("---" for _ in _COLUMNS) + " |")
    for pc in comparison.points:
        for m in pc.metrics:
            cells = [pc.label, *_cells(m)]
            if m.verdict == "regressed":
                cells[-1] = f"**{cells[-1]}**"
            lines.append("| " + " | ".join(esc(c) for c in cells) + " |")
    unmatched = _unmatched_lines(comparison)
    if unmatched:
        lines.append("")
        lines += [f"- {esc(line)}" for line in unmatched]
    lines += ["", summary_line(comparison)]
    return "\n".join(lines) + "\n"
