"""The parameter table: every run setting declared once, and what is generated from it."""

from __future__ import annotations

import argparse

import pytest

from meltbench import parameters
from meltbench.api import FLAT_FIELDS, build_spec
from meltbench.cli import build_parser
from meltbench.config import RunSpec
from meltbench.sweep.experiment import AXES, INT_AXES


def _spec_value(spec: RunSpec, path: str):
    value = spec
    for part in path.split("."):
        value = getattr(value, part)
    return value


def test_every_path_is_a_spec_field_and_the_defaults_are_the_specs():
    spec = RunSpec()
    for p in parameters.PARAMETERS:
        if p.path is None:
            continue
        value = _spec_value(spec, p.path)  # AttributeError: a path that is not a field
        if p.default is not None:
            assert value == p.default, p.key


def test_flat_keywords_reach_their_field():
    samples = {"int": 3, "float": 1.5, "str": "x"}
    for key, (section, name) in FLAT_FIELDS.items():
        p = next(q for q in parameters.PARAMETERS if q.key == key)
        if p.type not in samples or p.choices:
            continue
        value = 4096 if key == "ctx" else samples[p.type]
        spec = build_spec(**{key: value})
        assert getattr(getattr(spec, section), name) == value, key


def test_sweep_axes_come_from_the_table():
    assert AXES == parameters.SWEEP_AXES
    assert set(INT_AXES) == {
        "threads", "n_prompt", "n_gen", "n_depth", "ctx", "batch", "ubatch", "reps", "warmup",
        "seed", "doc_tokens", "n_docs", "max_turns", "concurrency", "num_requests",
        "batch_size", "seq_len", "resolution",
    }  # fmt: skip
    assert "quant" in AXES and "quant" not in FLAT_FIELDS  # a sweep-only axis


def _help_of(command: str, dest: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if a.dest == dest)
    return action.help


def test_help_states_each_commands_own_default():
    assert _help_of("run", "n_prompt").endswith("(default: 512)")
    assert _help_of("sustain", "n_prompt").endswith("(default: 64)")  # was 512 (issue 19)
    assert _help_of("sustain", "n_gen").endswith("(default: 256)")
    assert _help_of("run", "cooldown_timeout").endswith("(default: 300)")


def test_errors_name_the_flag_or_the_sweep_key():
    from meltbench.errors import UsageError

    with pytest.raises(UsageError, match="--n-prompt"):
        build_spec(flags=parameters.flag_names(), n_prompt=0)
    with pytest.raises(UsageError, match="n_prompt"):
        build_spec(flags=parameters.flag_names("sweep"), n_prompt=0)


def test_cli_options_become_keywords():
    parser = build_parser()
    args = parser.parse_args(["run", "-p", "64", "-o", "flash_attn=on", "--sensors", "none"])
    opts = parameters.options_from_args(args)
    assert opts == {"n_prompt": 64, "engine_options": {"flash_attn": "on"}, "sensors": ()}
