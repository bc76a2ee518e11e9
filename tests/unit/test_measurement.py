"""Measurement (device-side data) round trip, and the agent's reaction to a lost host."""

from __future__ import annotations

import io
import json

import pytest

from meltbench.harness.agent import _forward
from meltbench.harness.measurement import Measurement
from meltbench.harness.runner import WorkerOutput


def _events():
    return [
        {"event": "hello", "protocol": 1, "pid": 7, "clock": "perf_counter_ns"},
        {"event": "loaded", "load_ns": 5, "t_load_start_ns": 10, "t_load_end_ns": 15,
         "engine": {"name": "llama.cpp"}},
        {"event": "rep", "index": 0, "kind": "timed", "t_start_ns": 100,
         "token_ns": [200, 300], "tokens": [1, 2], "counters": None, "depth_fill_ns": None},
        {"event": "done", "memory": {"vm_hwm_bytes": 4096}},
    ]  # fmt: skip


def test_round_trip_through_json_replays_the_events():
    m = Measurement(events=_events(), returncode=0, memory={"peak_sampled_bytes": 4000})
    back = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back == m
    out = back.output()
    assert isinstance(out, WorkerOutput)
    assert out.ok and out.load_ns == 5 and len(out.reps) == 1
    assert out.engine == {"name": "llama.cpp"}


def test_a_transport_fault_is_the_failure_cause_as_is():
    m = Measurement(events=_events()[:3], protocol_errors=["target disconnected: EOF"])
    assert m.output().failure_cause() == "target disconnected: EOF"
    m = Measurement(events=_events()[:3], protocol_errors=["not JSON: b'x'"])
    assert m.output().failure_cause() == "worker protocol error: not JSON: b'x'"


def test_from_dict_rejects_what_is_not_a_measurement():
    with pytest.raises(ValueError):
        Measurement.from_dict({"returncode": 0})


class _Gone(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_agent_stops_the_worker_when_the_host_is_gone():
    good = io.StringIO()
    _forward(good, {"event": "rep"})
    assert json.loads(good.getvalue()) == {"event": "rep"}
    with pytest.raises(KeyboardInterrupt):
        _forward(_Gone(), {"event": "rep"})
