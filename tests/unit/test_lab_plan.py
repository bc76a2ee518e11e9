"""The lab file, device selectors and (point, device) pairs (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meltbench.errors import UsageError
from meltbench.lab.config import load_lab, parse_lab, ray_start_commands
from meltbench.lab.plan import load_lab_experiment, plan_pairs, select
from meltbench.sweep.experiment import Point

LAB = {
    "name": "bench-lab",
    "devices": {
        "box": {"url": "local"},
        "pi5": {"url": "ssh://pi@10.0.0.5", "host": "lab-1", "class": "linux-arm"},
        "pixel7": {"url": "adb://28031FDH2000EX", "host": "lab-2",
                   "env": {"ANDROID_SERIAL": "28031FDH2000EX"}},
    },
}  # fmt: skip


def test_lab_devices_defaults_and_ray_start_commands():
    lab = parse_lab(LAB, "lab.yaml")
    box, pi, phone = lab.devices.values()
    assert (box.kind, box.host, box.device_class) == ("local", "head", "local")
    assert (pi.kind, pi.host, pi.device_class) == ("ssh", "lab-1", "linux-arm")
    assert (phone.kind, phone.device_class, phone.env) == (
        "adb", "android", {"ANDROID_SERIAL": "28031FDH2000EX"})  # fmt: skip
    assert pi.target_entry == {"url": "ssh://pi@10.0.0.5"} and phone.resource == "device:pixel7"
    assert ray_start_commands(lab, "10.0.0.1:6379") == {
        "head": """ray start --head --port=6379 --resources='{"device:box": 1}'""",
        "lab-1": """ray start --address=10.0.0.1:6379 --resources='{"device:pi5": 1}'""",
        "lab-2": """ray start --address=10.0.0.1:6379 --resources='{"device:pixel7": 1}'""",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "a lab file needs 'devices:"),
        ({"devices": {"a": {"url": "local"}}, "hosts": 1}, "unknown key(s) hosts"),
        ({"devices": {"a b": "local"}}, "bad device name"),
        ({"devices": {"a": {"host": "x"}}}, "needs a 'url: ssh://...'"),
        ({"devices": {"a": {"url": "ssh://h", "password": "x"}}}, "passwords are not read"),
        ({"devices": {"a": {"url": "ssh://h", "colour": 1}}}, "unknown key(s) colour"),
        ({"devices": {"a": {"url": "ftp://h"}}}, "unknown target 'ftp://h'"),
        ({"devices": {"a": {"url": "local", "env": [1]}}}, "devices.a.env: expected a mapping"),
    ],
)
def test_bad_lab_files_are_one_line_errors(data, message):
    with pytest.raises(UsageError) as info:
        parse_lab(data, "lab.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_selectors():
    lab = parse_lab(LAB, "lab.yaml")
    assert [d.name for d in select("all", lab)] == ["box", "pi5", "pixel7"]
    assert [d.name for d in select("class:android", lab)] == ["pixel7"]
    assert [d.name for d in select("host:lab-1", lab)] == ["pi5"]
    assert [d.name for d in select("box", lab)] == ["box"]
    with pytest.raises(UsageError, match=r"matches no device.*class:NAME \(android, linux-arm"):
        select("class:jetson", lab)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_pairs_expand_devices_axis_include_exclude_and_not_applicable(tmp_path):
    import yaml

    lab = load_lab(write(tmp_path, "lab.yaml", yaml.safe_dump(LAB)))
    exp = load_lab_experiment(write(tmp_path, "exp.yaml", """\
n_prompt: [64, 256]
n_gen: 8
devices: [all]
engine: [llama.cpp, transformers]
exclude:
  - {devices: all, engine: transformers, n_prompt: 256}
  - {devices: class:android, engine: llama.cpp, n_prompt: 256}
include:
  - {devices: class:linux-arm, n_prompt: 1024}
"""))  # fmt: skip
    pairs = plan_pairs(exp, lab)
    got = [(p.device.name, p.point.params["engine"], p.point.params["n_prompt"],
            p.skip_reason is None) for p in pairs]  # fmt: skip
    assert got == [
        ("box", "llama.cpp", 64, True), ("pi5", "llama.cpp", 64, True),
        ("pixel7", "llama.cpp", 64, True),
        ("box", "llama.cpp", 256, True), ("pi5", "llama.cpp", 256, True),
        ("pi5", "llama.cpp", 1024, True),
        ("box", "transformers", 64, True), ("pi5", "transformers", 64, True),
        ("pixel7", "transformers", 64, False),
    ]  # fmt: skip
    phone_tf = pairs[-1]
    assert "adb targets run llama.cpp's llama-bench binary" in phone_tf.skip_reason
    keys = [p.key for p in pairs]
    assert len(set(keys)) == len(keys)
    first = pairs[0]
    assert first.key == Point.of({**first.point.params, "lab_device": "box"}).key
    assert first.options["target"] == "box" and "devices" not in first.point.params
    only = plan_pairs(exp, lab, ["class:android"])
    assert {p.device.name for p in only} == {"pixel7"}  # the transformers point: n/a there
    assert [p.skip_reason is None for p in only] == [True, False]


def test_a_point_no_device_can_run_is_an_error(tmp_path):
    import yaml

    lab = load_lab(write(tmp_path, "lab.yaml", yaml.safe_dump(LAB)))
    exp = load_lab_experiment(write(tmp_path, "exp.yaml",
                                    "engine: transformers\ndevices: class:android\n"))  # fmt: skip
    with pytest.raises(UsageError, match=r"adb targets run llama\.cpp"):
        plan_pairs(exp, lab)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cooldown_margin_c: 3\n", "cooldown_margin_c: not supported by meltbench lab"),
        ("target: local\n", "target: not supported by meltbench lab"),
        ("devices: {a: 1}\n", "devices: expected a value"),
        ("exclude:\n  - {colour: red}\n", "unknown parameter"),
    ],
)
def test_lab_experiment_errors(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        load_lab_experiment(write(tmp_path, "exp.yaml", text))
