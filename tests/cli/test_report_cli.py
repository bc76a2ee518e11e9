import subprocess
import sys

from meltbench.results.store import ResultStore
from tests.helpers import make_result


def test_report_command_writes_html_and_png(tmp_path):
    db = tmp_path / "r.db"
    runs = [make_result(), make_result(status="failed")]
    with ResultStore(db) as store:
        for r in runs:
            store.save(r)
    out = tmp_path / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", "report", "--db", str(db), "-o", str(out),
         "--png", str(tmp_path / "png"), "--title", "T <b>"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "T &lt;b&gt;" in html and "<b>" not in html.split("<body", 1)[1].split("</h1>")[0]
    assert runs[1].failure in html
    assert "latency-distributions" in html
    assert sorted(p.suffix for p in (tmp_path / "png").iterdir()) == [".png", ".svg"]


def test_report_with_no_runs_is_a_usage_error(tmp_path):
    ResultStore(tmp_path / "r.db").close()
    proc = subprocess.run(
        [sys.executable, "-m", "meltbench.cli", "report", "--db", str(tmp_path / "r.db")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "no runs to report" in proc.stderr
