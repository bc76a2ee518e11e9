import pytest

from meltbench.measure.timing import request_metrics


def test_metrics_from_synthetic_stream():
    # start at 1 s; first token after 100 ms; then gaps of 10, 20, 30 ms
    start = 1_000_000_000
    tokens = [start + 100_000_000, start + 110_000_000, start + 130_000_000, start + 160_000_000]
    m = request_metrics(start, tokens, n_prompt=50)
    assert m.n_prompt == 50 and m.n_gen == 4
    assert m.ttft_ms == 100.0
    assert m.prefill_tps == 500.0  # 50 tokens / 0.1 s
    assert m.decode_tps == pytest.approx(50.0)  # 3 tokens / 60 ms
    assert m.itl_ms == (10.0, 20.0, 30.0)
    assert m.tpot_ms == 20.0  # (160 - 100) / 3
    assert m.e2e_ms == 160.0


def test_tpot_equals_mean_itl():
    start = 0
    tokens = [7_000_000, 9_500_000, 13_000_000, 13_250_000, 20_000_000]
    m = request_metrics(start, tokens, n_prompt=1)
    assert m.tpot_ms == pytest.approx(sum(m.itl_ms) / len(m.itl_ms))


def test_single_token_has_no_decode_metrics():
    m = request_metrics(0, [2_000_000], n_prompt=8)
    assert m.ttft_ms == 2.0 and m.e2e_ms == 2.0 and m.prefill_tps == 4000.0
    assert m.decode_tps is None and m.tpot_ms is None and m.itl_ms == ()


@pytest.mark.parametrize(
    ("start", "tokens", "n_prompt", "match"),
    [
        (0, [], 4, "at least one"),
        (0, [5], 0, "n_prompt"),
        (10, [10, 20], 4, "after the request start"),
        (0, [10, 30, 20], 4, "backwards"),
    ],
)
def test_inconsistent_streams_are_rejected(start, tokens, n_prompt, match):
    with pytest.raises(ValueError, match=match):
        request_metrics(start, tokens, n_prompt)
