"""Text that comes from data (install hints, warning codes, model names, failure causes)
is printed as it is, never read as rich markup: ``[nvidia]`` in
``pip install 'meltbench[nvidia]'`` used to vanish as an unknown style tag."""

from __future__ import annotations

import io

from rich.console import Console

from meltbench.report.terminal import (
    print_bench_table,
    print_sensor_status,
    print_sensors,
    print_warnings,
)
from meltbench.sensors.base import Probe
from meltbench.sensors.nvml import NOT_INSTALLED_REASON
from tests.helpers import make_result


def rendered(fn, *args) -> str:
    out = io.StringIO()
    fn(*args, Console(file=out, width=250, color_system=None))
    return out.getvalue()


def test_missing_sensor_hint_keeps_the_extra():
    probes = [{"sensor": "nvml", "available": False, "reason": NOT_INSTALLED_REASON}]
    result = make_result(sensors={"probes": probes})
    assert "pip install 'meltbench[nvidia]'" in rendered(print_sensor_status, result)
    table = rendered(print_sensors, [Probe("nvml", False, NOT_INSTALLED_REASON)], {}, {})
    assert "meltbench[nvidia]" in table


def test_warning_codes_and_failure_causes_are_shown():
    warning = {"code": "few_reps", "message": "only [2] reps", "advice": "use [b]5[/b]"}
    result = make_result(
        status="failed", failure="worker crashed; last stderr: [error] bad", warnings=[warning]
    )
    text = rendered(print_warnings, result)
    assert "[few_reps] only [2] reps -- use [b]5[/b]" in text
    assert "last stderr: [error] bad" in text


def test_model_names_in_the_table_are_literal():
    result = make_result(model={"name": "[bold]tiny[/bold]", "quant": "Q8_0"})
    assert "[bold]tiny[/bold] Q8_0" in rendered(print_bench_table, [result])
