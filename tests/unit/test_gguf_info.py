import pytest

from meltbench.errors import UsageError
from meltbench.models.gguf_info import read_gguf_info
from tests.helpers import write_tiny_gguf


def test_header_facts(tiny_gguf):
    info = read_gguf_info(tiny_gguf)
    assert info.name == "tiny test model"
    assert info.architecture == "llama"
    assert info.quant == "Q8_0"
    assert info.n_params == 48
    assert info.n_tensors == 2
    assert (info.n_ctx_train, info.n_layer, info.n_embd) == (128, 2, 8)
    assert info.gguf_version == 3
    assert info.size_bytes == tiny_gguf.stat().st_size


def test_quant_falls_back_to_dominant_tensor_type(tmp_path):
    info = read_gguf_info(write_tiny_gguf(tmp_path / "nofiletype.gguf", file_type=None))
    assert info.quant == "F32"


def test_missing_directory_and_non_gguf(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_gguf_info(tmp_path / "absent.gguf")
    with pytest.raises(UsageError, match="directory"):
        read_gguf_info(tmp_path)
    text = tmp_path / "model.gguf"
    text.write_text("hello, not a model")
    with pytest.raises(UsageError, match="not a GGUF file"):
        read_gguf_info(text)


@pytest.mark.parametrize("keep", [10, 200, -8])
def test_truncated_file(tiny_gguf, tmp_path, keep):
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])
    with pytest.raises(UsageError, match="truncated"):
        read_gguf_info(cut)
