"""Architecture search, pure parts: exact parameter counts, spaces, the Pareto front, the
latency model's fit and its cross-validation, candidate choice, rank comparison."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from meltbench.archsearch.latency_model import (
    FEATURES,
    Row,
    bits_per_weight,
    features,
    fit,
)
from meltbench.archsearch.materialize import gguf_tensors, hf_config
from meltbench.archsearch.params import count_params
from meltbench.archsearch.pareto import pareto_front
from meltbench.archsearch.search import Candidate, TargetSearch, choose_initial, spread
from meltbench.archsearch.space import Shape, load_space, parse_budget, parse_count
from meltbench.errors import UsageError

# Qwen2-0.5B's config.json (Qwen/Qwen2-0.5B): 24 layers, hidden 896, 14 heads, 2 KV heads,
# intermediate 4864, vocab 151936, tied, Q/K/V biases.
QWEN2_05B = Shape(n_layers=24, d_model=896, n_heads=14, n_kv_heads=2, head_dim=64, d_ff=4864,
                  vocab_size=151936, tied=True, ctx=32768, qkv_bias=True)  # fmt: skip
# Gemma 3 270M's config.json (google/gemma-3-270m): 18 layers, hidden 640, 4 heads, 1 KV
# head of 256, intermediate 2048, vocab 262144, tied, QK norm, 4 norms per block.
GEMMA3_270M = Shape(n_layers=18, d_model=640, n_heads=4, n_kv_heads=1, head_dim=256, d_ff=2048,
                    vocab_size=262144, tied=True, ctx=32768, qk_norm=True,
                    norms_per_block=4)  # fmt: skip


def test_published_parameter_counts() -> None:
    # sum(p.numel() for p in model.parameters()) of each model in transformers.
    assert count_params(QWEN2_05B) == 494_032_768
    assert count_params(GEMMA3_270M) == 268_098_176


@pytest.mark.parametrize(
    "shape",
    [
        Shape(4, 256, 4, 4, 64, 704),
        Shape(3, 128, 4, 1, 32, 512, gated=False, tied=False, vocab_size=1000),
        Shape(2, 192, 6, 2, 32, 512, qkv_bias=True, vocab_size=600),
    ],
    ids=["llama-mha", "starcoder2-mqa-untied", "qwen2-gqa-bias"],
)
def test_gguf_and_transformers_hold_exactly_count_params(shape: Shape) -> None:
    assert sum(math.prod(dims) for _, dims, _ in gguf_tensors(shape)) == count_params(shape)
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = dict(hf_config(shape))
    config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == count_params(shape)


def test_shape_key_attention_and_label() -> None:
    s = Shape(4, 256, 4, 1, 64, 704)
    assert s.attention == "MQA"
    assert Shape(4, 256, 4, 2, 64, 704).attention == "GQA"
    assert Shape(4, 256, 4, 4, 64, 704).attention == "MHA"
    assert s.label() == "L4 d256 h4/1x64 ff704 swiglu v32000 tied"
    assert len(s.key) == 12 and s.key == Shape.from_dict(s.to_dict()).key
    assert s.key != Shape(4, 256, 4, 2, 64, 704).key


def test_counts_and_budgets() -> None:
    assert parse_count("300M", "x") == 300_000_000
    assert parse_count("1.5B", "x") == 1_500_000_000
    assert parse_count(12345, "x") == 12345
    assert parse_budget("300M..600M") == (300_000_000, 600_000_000)
    with pytest.raises(UsageError, match="--budget-params"):
        parse_budget("600M..300M")
    with pytest.raises(UsageError):
        parse_count("lots", "x")


def test_pareto_front_exact() -> None:
    pts = [("a", 10, 5.0), ("b", 20, 4.0), ("c", 30, 6.0), ("d", 30, 7.0), ("e", 15, 5.0),
           ("f", 40, 6.0), ("g", 5, float("nan"))]  # fmt: skip
    # b dominates a and e (more params, less time); f dominates c and d (more params, same
    # or less time); g has no cost.
    assert pareto_front(pts) == ["b", "f"]
    assert pareto_front([("x", 1, 1.0), ("y", 1, 1.0), ("z", 2, 3.0)]) == ["x", "y", "z"]
    assert pareto_front([]) == []


def _synthetic_rows(coef: dict[str, float]) -> list[Row]:
    rows = []
    for i, shape in enumerate(
        [
            Shape(L, d, d // 64, kv, 64, 4 * d)
            for L in (4, 8, 12)
            for d, kv in ((256, 4), (384, 2), (512, 8))
        ]
    ):
        for n_prompt in (64, 256):
            x = features(shape, "prefill", n_prompt, 0, 32, 4.5)
            rows.append(Row(f"c{i}", x, sum(coef[f] * x[f] for f in FEATURES)))
    return rows


def test_fit_recovers_known_coefficients_and_cross_validates_to_zero() -> None:
    truth = {"intercept": 0.8, "gflop": 12.0, "weight_gb": 300.0, "kv_gb": 0.0, "n_layers": 0.05}
    result = fit("prefill", _synthetic_rows(truth))
    for name, value in truth.items():
        assert result.coef[name] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert result.r_squared == pytest.approx(1.0)
    assert result.n_candidates == 9 and result.n_rows == 18
    assert result.cv_mape == pytest.approx(0.0, abs=1e-6)
    assert len(result.held_out) == 18


def test_fit_keeps_coefficients_non_negative_and_reports_held_out_error() -> None:
    truth = {"intercept": 2.0, "gflop": 10.0, "weight_gb": 0.0, "kv_gb": 0.0, "n_layers": 0.0}
    rows = _synthetic_rows(truth)
    noisy = [Row(r.candidate, r.x, r.y_ms * (1.1 if i % 2 else 0.9)) for i, r in enumerate(rows)]
    result = fit("prefill", noisy)
    assert all(v >= 0 for v in result.coef.values())
    assert 0 < result.cv_mape < 30
    assert result.cv_max_ape >= result.cv_mape


def test_fit_rejects_bad_rows() -> None:
    with pytest.raises(ValueError, match="no decode"):
        fit("decode", [])
    with pytest.raises(ValueError, match="positive"):
        fit("decode", [Row("a", dict.fromkeys(FEATURES, 1.0), 0.0)])


def test_features_exact() -> None:
    s = Shape(2, 128, 2, 1, 64, 256, vocab_size=1000)
    block = 2 * (2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 256)  # 2 layers of matmuls
    head = 1000 * 128
    x = features(s, "decode", 10, 0, 5, 8.0)
    context = 10 + 2  # prompt + (n_gen - 1) / 2
    assert x["gflop"] == pytest.approx((2 * (block + head) + 4 * 2 * 2 * 64 * context) / 1e9)
    assert x["weight_gb"] == pytest.approx((block + head) / 1e9)
    assert x["kv_gb"] == pytest.approx(2 * 2 * 64 * 2 * context / 1e9)
    p = features(s, "prefill", 10, 4, 5, 8.0)
    pairs = 10 * 4 + 55
    assert p["gflop"] == pytest.approx((2 * 10 * block + 2 * head + 4 * 2 * 2 * 64 * pairs) / 1e9)
    assert bits_per_weight("Q4_0") == 4.5
    assert bits_per_weight("Q8_0") == 8.5
    assert bits_per_weight("F16") == 16
    with pytest.raises(ValueError):
        bits_per_weight("Q9_9")


def _space_file(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(body)
    return p


def test_space_expands_filters_and_counts_dropped(tmp_path: Path) -> None:
    space = load_space(_space_file(tmp_path, """\
name: t
shape:
  n_layers: [2, 4]
  d_model: [128, 192]
  n_heads: [4, 5]
  n_kv_heads: [4, 2]
  vocab_size: 1000
budget_params: 1..1.2M
"""))  # fmt: skip
    shapes, dropped = space.shapes()
    # n_heads 5: kv 4 and 2 don't divide it (4 combos each of L x d); n_heads 4 divides
    # both d_model values; of the 8 buildable shapes, the budget keeps those <= 1.2M.
    assert dropped["n_kv_heads does not divide n_heads"] == 8
    assert all(s.n_params <= 1_200_000 for s in shapes)
    assert [s.n_params for s in shapes] == sorted(s.n_params for s in shapes)
    assert len(shapes) + dropped.get("outside the parameter budget", 0) == 8


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("shape: {n_layers: 2, d_model: 64}\n", r"space.yaml:1: shape: missing n_heads"),
        (
            "shape: {n_layers: 2, d_model: 64, n_heads: 2}\nstrategy: greedy\n",
            r"space.yaml:2: strategy: expected one of",
        ),
        (
            "shape:\n  n_layers: [2, -1]\n  d_model: 64\n  n_heads: 2\n",
            r"space.yaml:2: shape.n_layers.1: expected an integer >= 1",
        ),
        (
            "shape: {n_layers: 2, d_model: 64, n_heads: 2}\nworkload: {model: x}\n",
            r"workload.model: set by the search",
        ),
        ("shape: {n_layers: 2, d_model: 64, n_heads: 2, heads: 3}\n", r"unknown dimension"),
    ],
)
def test_space_errors_name_file_line_and_field(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_space(_space_file(tmp_path, body))


def _space(tmp_path: Path, strategy: str, samples: int = 4) -> tuple:
    space = load_space(_space_file(tmp_path, f"""\
shape: {{n_layers: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], d_model: 64, n_heads: 2, vocab_size: 512}}
strategy: {strategy}
samples: {samples}
max_candidates: 5
"""))  # fmt: skip
    return space, space.shapes()[0]


def test_candidate_choice_per_strategy(tmp_path: Path) -> None:
    space, shapes = _space(tmp_path, "model-guided", samples=8)
    # max(5, 8 // 2) = 5 shapes spread evenly over the 10 sorted by parameters (indices
    # round(i * 9 / 4): 0, 2, 4, 7, 9; round half to even).
    assert [s.n_layers for s in choose_initial(space, shapes)] == [1, 3, 5, 8, 10]
    space, shapes = _space(tmp_path, "random", samples=4)
    picked = choose_initial(space, shapes)
    assert len(picked) == 4 and picked == choose_initial(space, shapes)  # seeded
    space, shapes = _space(tmp_path, "exhaustive")
    with pytest.raises(UsageError, match=r"10 shapes .* max_candidates=5"):
        choose_initial(space, shapes)


def test_fronts_of_a_target_search() -> None:
    a, b, c = (Shape(n, 64, 2, 2, 32, 128, vocab_size=512) for n in (1, 2, 3))
    ts = TargetSearch("local", {s.key: Candidate(s) for s in (a, b, c)})
    for s, ms in ((a, 2.0), (b, 1.5)):
        ts.candidates[s.key].round = 1
        ts.candidates[s.key].measured["decode_ms"] = ms
    for s, ms in ((a, 2.0), (b, 2.5), (c, 3.0)):
        ts.candidates[s.key].predicted["decode_ms"] = ms
    assert ts.front("decode_ms") == [b.key]  # c never measured; b beats a
    assert ts.front("decode_ms", predicted=True) == [a.key, b.key, c.key]


def test_spread_takes_both_ends_and_even_positions() -> None:
    shapes = [Shape(n, 64, 2, 2, 32, 128, vocab_size=512) for n in range(1, 8)]
    assert [s.n_layers for s in spread(shapes, 3)] == [1, 4, 7]
    assert [s.n_layers for s in spread(shapes, 1)] == [1]
    assert spread(shapes, 9) == shapes


def test_gelu_shapes_need_heads_times_head_dim_equal_to_width(tmp_path: Path) -> None:
    space = load_space(_space_file(tmp_path, """\
shape: {n_layers: 2, d_model: [128, 160], n_heads: 4, head_dim: 32, activation: [swiglu, gelu],
        vocab_size: 512}
"""))  # fmt: skip
    shapes, dropped = space.shapes()
    # gelu at d_model 160 (4 x 32 = 128): llama.cpp's starcoder2 loader would refuse it
    assert dropped == {"gelu (StarCoder2 block) needs n_heads * head_dim == d_model": 1}
    assert len(shapes) == 3
