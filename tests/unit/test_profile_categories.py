import pytest

from meltbench.measure.profile import CATEGORIES, classify, summarize_ops


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("aten::addmm", "gemm"),
        ("aten::mm", "gemm"),
        ("aten::linear", "gemm"),
        ("MatMulNBits", "gemm"),
        ("MatMul", "gemm"),
        ("Linear", "gemm"),
        ("GroupQueryAttention", "attention"),
        ("aten::scaled_dot_product_attention", "attention"),
        ("aten::_softmax", "attention"),
        ("Gemma3Attention", "attention"),
        ("Gemma3RMSNorm", "norm"),
        ("SkipSimplifiedLayerNormalization", "norm"),
        ("aten::layer_norm", "norm"),
        ("aten::gelu", "activation"),
        ("FastGelu", "activation"),
        ("aten::silu", "activation"),
        ("MambaMixer", "ssm_scan"),
        ("selective_scan_fn", "ssm_scan"),
        ("aten::cumsum", "ssm_scan"),
        ("aten::add", "other"),
        ("aten::copy_", "other"),
        ("Gather", "other"),
    ],
)
def test_classify(name, category):
    assert classify(name) == category


def test_summarize_ops_totals_every_category():
    totals = summarize_ops([("aten::mm", 2.0), ("MatMulNBits", 3.0), ("aten::add", 0.5)])
    assert set(totals) == set(CATEGORIES)
    assert totals["gemm"] == 5.0
    assert totals["other"] == 0.5
    assert totals["attention"] == 0.0
