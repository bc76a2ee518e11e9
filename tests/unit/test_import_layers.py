"""The package's import graph: no upward import, no cycle, no module over ~600 lines
(``scripts/import_graph.py``, which also prints the package-level edges)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_upward_import_no_cycle_no_long_module(capsys):
    tool = _tool()
    code = tool.main([])
    out = capsys.readouterr().out
    assert code == 0, out


def test_the_checker_sees_a_violation():
    tool = _tool()
    edges = {"meltbench.measure.x": {"meltbench.api"}, "meltbench.api": {"meltbench.measure.x"}}
    assert tool.upward_imports(edges) == [
        "meltbench.measure.x (layer 3) -> meltbench.api (layer 9)"
    ]
    assert tool.cycles(edges) == [["meltbench.api", "meltbench.measure.x"]]
    edges, lines = tool.graph()
    assert "meltbench.results.compare" in edges and lines["meltbench.metrics"] > 0
