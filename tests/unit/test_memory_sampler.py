import subprocess
import sys
import time

import pytest

from meltbench.sensors.memory import RssSampler, rss_reader


def test_sampler_sees_a_real_allocation_at_its_rate():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; x = bytearray(80 * 2**20); time.sleep(0.6)"]
    )
    with RssSampler(child.pid, 50.0) as sampler:
        child.wait()
        time.sleep(0.05)
    assert sampler.peak_bytes is not None and sampler.peak_bytes > 80 * 2**20
    assert all(s.rss_bytes > 0 for s in sampler.samples)
    times = [s.t_ns for s in sampler.samples]
    assert times == sorted(times)
    # scheduled on absolute deadlines: never faster than requested (no catch-up bursts)
    assert 0 < sampler.achieved_hz <= 50.0 * 1.1


def test_reader_of_a_missing_process():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        rss_reader(child.pid)


def test_rate_must_be_positive():
    with pytest.raises(ValueError, match="> 0 Hz"):
        RssSampler(1, 0)
