"""The metrics catalogue: lookups of families, directions, and the README kept equal to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meltbench import metrics
from meltbench.measure.energy import rep_energy_metrics
from tests.helpers import make_result

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_metric_of_a_run_is_catalogued():
    result = make_result()
    for name in result.metrics:
        assert metrics.lookup(name).name == name


def test_every_energy_window_metric_is_catalogued():
    from meltbench.sensors.sampler import SensorSeries

    series = SensorSeries(channels=[], t_ns=[], values=[])
    names = list(rep_energy_metrics(series, 0, [10**9, 2 * 10**9, 3 * 10**9], 8, 1.0, []))
    assert {"energy_j_decode_net", "tokens_per_j_decode", "energy_j_net"} <= set(names)
    for name in names:
        entry = metrics.lookup(name)
        assert entry.name == name
        windowed = "_prefill" in name or "_decode" in name
        assert ("window: " in entry.definition) == windowed, name
        assert ("net of idle" in entry.definition) == name.endswith("_net"), name
    assert metrics.lookup("energy_j_load").per == "run"


@pytest.mark.parametrize(
    ("name", "unit", "direction", "per"),
    [
        ("itl_ms", "ms", -1, "token"),
        ("decode_tps", "tok/s", 1, "request"),
        ("avg_power_w_prefill_net", "W", -1, "request"),
        ("tokens_per_j_decode", "tok/J", 1, "request"),
        ("kl_mean_nats", "nats", -1, "run"),
        ("task_arc_easy_acc", "", 1, "run"),
        ("cpu_freq_mhz_decode", "MHz", 0, "request"),
    ],
)
def test_lookup(name, unit, direction, per):
    m = metrics.lookup(name)
    assert (m.unit, m.direction, m.per) == (unit, direction, per)


@pytest.mark.parametrize("name", ["decode_ms", "energy_j_warmup", "cpu_freq_mhz_decode_net", "x"])
def test_unknown_names_are_refused(name):
    with pytest.raises(KeyError, match="not a metric"):
        metrics.lookup(name)
    with pytest.raises(ValueError, match=name):
        metrics.direction(name)


def test_readme_table_is_the_catalogue():
    text = README.read_text()
    block = re.search(
        r"<!-- metrics-catalogue:begin -->\n(.*?)\n<!-- metrics-catalogue:end -->", text, re.S
    )
    assert block, "README lost its metrics-catalogue block"
    assert block.group(1) == metrics.markdown_table(), "run: python -m meltbench.metrics"
