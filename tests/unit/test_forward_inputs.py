"""Forward tasks: presets, seeded inputs and the output check (pure code, exact values)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meltbench.forward.inputs import (
    FIRST_TOKEN_ID,
    describe_inputs,
    encoder_inputs,
    image_inputs,
)
from meltbench.forward.outputs import compare_outputs
from meltbench.forward.presets import (
    DEFAULT_MODELS,
    ENCODER_PRESETS,
    VISION_PRESETS,
    max_seq_len,
    task_of,
)


def test_encoder_inputs_shapes_range_and_seed() -> None:
    a = encoder_inputs(2, 7, 10, seed=5)
    assert set(a) == {"input_ids", "attention_mask"}
    assert a["input_ids"].shape == (2, 7) and a["input_ids"].dtype == np.int64
    assert a["attention_mask"].dtype == np.int64 and a["attention_mask"].tolist() == [[1] * 7] * 2
    assert a["input_ids"].min() >= FIRST_TOKEN_ID and a["input_ids"].max() < 10
    expected = np.random.default_rng(5).integers(FIRST_TOKEN_ID, 10, size=(2, 7), dtype=np.int64)
    assert a["input_ids"].tolist() == expected.tolist()
    assert encoder_inputs(2, 7, 10, seed=5)["input_ids"].tolist() == a["input_ids"].tolist()
    assert encoder_inputs(2, 7, 10, seed=6)["input_ids"].tolist() != a["input_ids"].tolist()


def test_encoder_inputs_never_draw_special_ids() -> None:
    ids = encoder_inputs(64, 64, FIRST_TOKEN_ID + 2, seed=0)["input_ids"]
    assert set(np.unique(ids).tolist()) == {FIRST_TOKEN_ID, FIRST_TOKEN_ID + 1}


@pytest.mark.parametrize(
    "args, message",
    [((0, 8, 100), "batch must be >= 1"), ((1, 0, 100), "seq_len must be >= 1"),
     ((1, 8, 3), "vocab_size must be > 3")],
)  # fmt: skip
def test_encoder_inputs_refuse_bad_sizes(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encoder_inputs(*args, seed=0)


def test_image_inputs_are_seeded_standard_normal_nchw() -> None:
    x = image_inputs(2, 4, seed=1)["pixel_values"]
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    expected = np.random.default_rng(1).standard_normal((2, 3, 4, 4), dtype=np.float32)
    assert np.array_equal(x, expected)
    with pytest.raises(ValueError, match="resolution must be >= 1"):
        image_inputs(1, 0, seed=0)


def test_describe_inputs_names_shapes_and_digest() -> None:
    a = describe_inputs(encoder_inputs(1, 3, 50, seed=0))
    assert a["arrays"] == {
        "attention_mask": {"shape": [1, 3], "dtype": "int64"},
        "input_ids": {"shape": [1, 3], "dtype": "int64"},
    }
    assert a == describe_inputs(encoder_inputs(1, 3, 50, seed=0))
    assert a["sha256"] != describe_inputs(encoder_inputs(1, 3, 50, seed=1))["sha256"]
    assert len(a["sha256"]) == 64


def test_compare_outputs_exact_differences_and_ratio() -> None:
    ref = {"logits": np.array([[1.0, -2.0, 0.0]]), "pooled": np.array([0.5])}
    out = {"logits": np.array([[1.0005, -2.0, 0.00005]]), "pooled": np.array([0.5]), "x": 1}
    check = compare_outputs(ref, out)
    assert check.match and check.reason is None
    assert check.max_abs_diff == pytest.approx(5e-4)
    # elements: 5e-4 / (1e-4 + 1e-3 * 1) = 0.4545 and 5e-5 / (1e-4 + 0) = 0.5, the worst
    assert check.tolerance_ratio == pytest.approx(0.5)
    assert check.per_output["pooled"] == {
        "max_abs_diff": 0.0, "max_abs_ref": 0.5, "tolerance_ratio": 0.0, "shape": [1]
    }  # fmt: skip
    assert check.to_dict()["per_output"]["logits"]["max_abs_ref"] == 2.0


def test_compare_outputs_fails_beyond_tolerance_and_on_nan() -> None:
    ref = {"h": np.zeros((2, 2))}
    far = compare_outputs(ref, {"h": np.array([[0.0, 2e-4], [0.0, 0.0]])})
    assert not far.match and far.tolerance_ratio == pytest.approx(2.0)
    assert (
        far.reason == "output 'h' differs by up to 0.0002 (tolerance 0.0001 + 0.001 x |reference|)"
    )
    nan = compare_outputs(ref, {"h": np.array([[np.nan, 0.0], [0.0, 0.0]])})
    assert not nan.match and math.isnan(nan.max_abs_diff)
    assert nan.reason == "output 'h' has NaN or infinite values"
    exact = compare_outputs(ref, {"h": np.zeros((2, 2))}, atol=0, rtol=0)
    assert exact.match and exact.tolerance_ratio == 0.0


def test_compare_outputs_refuses_missing_or_misshapen_outputs() -> None:
    with pytest.raises(ValueError, match="outputs lack h; the engine returned g"):
        compare_outputs({"h": np.zeros(2)}, {"g": np.zeros(2)})
    with pytest.raises(ValueError, match=r"shape \(3,\), the reference \(2,\)"):
        compare_outputs({"h": np.zeros(2)}, {"h": np.zeros(3)})
    with pytest.raises(ValueError, match="no reference outputs"):
        compare_outputs({}, {})
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        compare_outputs({"h": np.zeros(2)}, {"h": np.zeros(2)}, atol=-1)


def test_presets_tasks_and_sequence_limits() -> None:
    assert task_of("bert-base") == "encode" and task_of("efficientnet_b0") == "classify"
    assert task_of("gemma3-270m-q4_k_m") is None
    assert {task_of(m) for m in DEFAULT_MODELS.values()} == {"encode", "classify"}
    assert max_seq_len(ENCODER_PRESETS["bert-base"].hf_config()) == 512
    assert max_seq_len(ENCODER_PRESETS["roberta-base"].hf_config()) == 512
    xlmr = ENCODER_PRESETS["xlm-roberta-base"].hf_config()
    assert xlmr["model_type"] == "xlm-roberta" and xlmr["vocab_size"] == 250002
    assert ENCODER_PRESETS["bert-tiny"].hf_config()["num_hidden_layers"] == 2
    assert VISION_PRESETS["mobilenetv4_hybrid_medium"].resolution == 256
