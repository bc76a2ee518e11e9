"""The HTML report of real runs, opened in real headless Chromium (Debian's package,
driven by playwright): no console error, no request but the page itself, no dialog, the
figures drawn, and a malicious model name shown as text."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import pytest

import meltbench

pytestmark = pytest.mark.integration

EVIL = "<script>alert(1)</script>"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
EXPECTED_PLOTS = ("tps-vs-context", "latency-distributions", "memory-vs-context")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> tuple[Path, list]:
    """A tiny real context sweep (3 prompt lengths) plus a copy of one run whose model
    name is a script tag, rendered to report.html."""
    from meltbench.report.html import build_report

    runs = [meltbench.run(n_prompt=n, n_gen=4, reps=2, warmup=0) for n in (16, 32, 64)]
    assert all(r.ok for r in runs), [r.failure for r in runs]
    evil = runs[0].model_copy(
        update={"run_id": uuid.uuid4().hex, "model": {**runs[0].model, "name": EVIL}}
    )
    results = [*runs, evil]
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(build_report(results, title=f"real runs {EVIL}"), encoding="utf-8")
    return path, results


@pytest.fixture(scope="module")
def browser():
    # No skips: scripts/test.sh installs playwright and Debian's chromium.
    from playwright import sync_api

    assert Path(CHROMIUM).exists() or shutil.which("chromium"), (
        "Chromium is not installed (apt-get install chromium)"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def opened(browser, report_file):
    """The report loaded in a page, with everything the page did recorded."""
    path, results = report_file
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    events: dict[str, list] = {"console": [], "requests": [], "dialogs": [], "errors": []}
    page.on("console", lambda m: events["console"].append((m.type, m.text)))
    page.on("request", lambda r: events["requests"].append(r.url))
    page.on("pageerror", lambda e: events["errors"].append(str(e)))

    def on_dialog(dialog) -> None:
        events["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.as_uri(), wait_until="load")
    yield page, events, path, results
    page.close()


def distinct_colours(png: bytes) -> tuple[int, float]:
    """(number of distinct RGB colours, share of pixels that are not near-white)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 24) or []
    total = img.width * img.height
    inked = sum(n for n, (r, g, b) in colours if min(r, g, b) < 235)
    return len(colours), inked / total


def test_no_console_error_no_script_error_no_dialog(opened):
    _page, events, _, _ = opened
    assert [m for m in events["console"] if m[0] in ("error", "warning")] == []
    assert events["errors"] == []
    assert events["dialogs"] == []


def test_only_the_page_itself_is_requested(opened):
    _page, events, path, _ = opened
    assert events["requests"] == [path.as_uri()]


def test_malicious_model_name_is_shown_as_text(opened):
    page, events, _, _ = opened
    text = page.inner_text("body")
    assert EVIL in text
    assert f"real runs {EVIL}" == page.title()
    assert page.locator("script").count() == 0
    assert events["dialogs"] == []


def test_each_expected_plot_is_drawn_and_not_blank(opened, tmp_path):
    page, _, _, results = opened
    for plot_id in EXPECTED_PLOTS:
        figure = page.locator(f"#plot-{plot_id}")
        assert figure.count() == 1, plot_id
        img = figure.locator("img")
        assert img.evaluate("i => i.complete && i.naturalWidth > 0"), plot_id
        box = img.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150, (plot_id, box)
        shot = img.screenshot(path=str(tmp_path / f"{plot_id}.png"))
        n_colours, inked = distinct_colours(shot)
        # A plot has axes, text and coloured data: many colours and some ink; a blank
        # or broken image has a handful of colours and next to no ink.
        assert n_colours > 50 and inked > 0.02, (plot_id, n_colours, inked)
        caption = figure.locator("figcaption").inner_text()
        assert results[0].run_id[:8] in caption
    for absent in ("quant-speed-size", "operator-breakdown"):
        assert page.locator(f"#plot-{absent}").count() == 0


def test_blank_image_is_told_apart_from_a_plot(browser):
    """The non-blank check above really separates an empty figure from a drawn one."""
    page = browser.new_page()
    page.set_content(
        "<div id='blank' style='width:400px;height:200px;background:#fff'></div>"
        "<p id='text'>a few words</p>"
    )
    n_colours, inked = distinct_colours(page.locator("#blank").screenshot())
    assert n_colours <= 2 and inked == 0.0
    page.close()


def test_summary_shows_every_run(opened):
    page, _, _, results = opened
    table = page.locator("#results table").inner_text()
    for r in results:
        assert r.run_id[:8] in table
    assert "pp16" in table and "tg4" in table
