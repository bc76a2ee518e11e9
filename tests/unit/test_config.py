import pytest
from pydantic import ValidationError

from meltbench.api import build_spec
from meltbench.config import DEFAULT_MODEL, RunSpec
from meltbench.errors import UsageError


def test_defaults_follow_llama_bench():
    spec = RunSpec()
    w = spec.workload
    assert (w.n_prompt, w.n_gen, w.n_depth, w.reps, w.warmup) == (512, 128, 0, 5, 1)
    assert spec.model.ref == DEFAULT_MODEL
    assert spec.engine.name == "llama.cpp"
    assert spec.n_ctx == 640
    assert w.label == "pp512+tg128"


def test_label_with_depth_and_ctx():
    spec = build_spec(n_prompt=64, n_gen=16, n_depth=4096)
    assert spec.workload.label == "pp64+tg16@d4096"
    assert spec.n_ctx == 4176


def test_spec_is_frozen_and_round_trips():
    spec = build_spec(n_prompt=64, threads=2, engine_options={"flash_attn": True})
    with pytest.raises(ValidationError):
        spec.workload.n_prompt = 3  # type: ignore[misc]
    assert RunSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reps": 0}, "--reps: input should be greater than or equal to 1 (got 0)"),
        ({"threads": -1}, "--threads: input should be greater than or equal to 1 (got -1)"),
        ({"n_prompt": 0}, "--n-prompt: input should be greater than or equal to 1 (got 0)"),
        ({"n_depth": -5}, "--n-depth: input should be greater than or equal to 0 (got -5)"),
        (
            {"n_prompt": 512, "n_gen": 128, "ctx": 256},
            "n_depth + n_prompt + n_gen = 640 tokens does not fit in ctx = 256; "
            "raise ctx to at least 640 or shorten the workload",
        ),
    ],
)
def test_bad_values_give_one_line(kwargs, message):
    flags = {
        "workload.reps": "--reps",
        "engine.threads": "--threads",
        "workload.n_prompt": "--n-prompt",
        "workload.n_depth": "--n-depth",
    }
    with pytest.raises(UsageError) as exc:
        build_spec(flags=flags, **kwargs)
    assert str(exc.value) == message
    assert "\n" not in str(exc.value)


def test_unknown_option():
    with pytest.raises(UsageError, match="unknown run option 'bogus'"):
        build_spec(bogus=1)
