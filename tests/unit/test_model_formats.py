import json
import struct

import pytest

from meltbench.errors import UsageError
from meltbench.models.hf_info import read_genai_info, read_hf_info, safetensors_header
from meltbench.models.resolve import detect_format, resolve_model


def write_safetensors(path, tensors):
    """A valid safetensors file: 8-byte LE header length, JSON header, zeroed data."""
    header, offset = {}, 0
    sizes = {"F32": 4, "BF16": 2, "F16": 2}
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(offset))


@pytest.fixture
def hf_folder(tmp_path):
    folder = tmp_path / "tiny-hf"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "max_position_embeddings": 2048})
    )
    write_safetensors(
        folder / "model.safetensors",
        {"embed.weight": ("BF16", [100, 16]), "norm.weight": ("F32", [16])},
    )
    return folder


def test_hf_folder_facts(hf_folder):
    info = read_hf_info(hf_folder)
    assert info["architecture"] == "qwen2"
    assert info["n_params"] == 1616
    assert info["quant"] == "bfloat16"
    assert info["n_ctx_train"] == 2048
    assert info["size_bytes"] == (hf_folder / "model.safetensors").stat().st_size
    assert "embed.weight" in safetensors_header(hf_folder / "model.safetensors")


def test_genai_folder_facts(tmp_path):
    (tmp_path / "genai_config.json").write_text(
        json.dumps({"model": {"type": "qwen2", "context_length": 512, "vocab_size": 100}})
    )
    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    (tmp_path / "meltbench.json").write_text(json.dumps({"precision": "int4"}))
    info = read_genai_info(tmp_path)
    assert (info["architecture"], info["quant"], info["size_bytes"]) == ("qwen2", "int4", 10)
    assert info["n_ctx_train"] == 512


def test_detect_format(hf_folder, tiny_gguf, tmp_path):
    assert detect_format(hf_folder) == "hf"
    assert detect_format(tiny_gguf) == "gguf"
    genai = tmp_path / "genai"
    genai.mkdir()
    (genai / "genai_config.json").write_text("{}")
    assert detect_format(genai) == "onnx-genai"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="model path is a directory"):
        detect_format(empty)


def test_engine_that_cannot_load_the_format_says_how_to_convert(hf_folder, tiny_gguf):
    with pytest.raises(UsageError, match=r"cannot load a hf model .* it loads: gguf"):
        resolve_model(str(hf_folder), formats=("gguf",))
    with pytest.raises(UsageError, match=r"meltbench convert .* --to hf"):
        resolve_model(str(tiny_gguf), formats=("hf",))
    resolved = resolve_model(str(hf_folder), formats=("hf", "gguf"))
    assert resolved.format == "hf" and resolved.info["n_params"] == 1616
    assert resolved.handle().format == "hf"


def test_random_weights_presets_and_configs(hf_folder):
    r = resolve_model("llama", formats=("config",), weights="random")
    assert (r.format, r.path, r.info["architecture"]) == ("config", None, "llama")
    r = resolve_model(str(hf_folder), formats=("config",), weights="random")
    assert r.path == (hf_folder / "config.json").resolve()
    with pytest.raises(UsageError, match="no architecture preset"):
        resolve_model("not-a-preset", formats=("config",), weights="random")
    with pytest.raises(UsageError, match="cannot build random weights"):
        resolve_model("llama", formats=("gguf",), weights="random")


def test_remote_model_is_a_name():
    r = resolve_model("gpt-4o-mini", formats=("remote",))
    assert (r.format, r.path, r.info["name"]) == ("remote", None, "gpt-4o-mini")


def write_mnn_folder(folder, weight=b"\1" * 16):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"llm_model": "llm.mnn"}))
    (folder / "llm_config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (folder / "llm.mnn").write_bytes(b"\1" * 8)
    (folder / "llm.mnn.weight").write_bytes(weight)
    return folder


def test_runtime_formats_are_detected_by_folder_files_and_magic_bytes(tmp_path):
    mnn = write_mnn_folder(tmp_path / "m")
    assert detect_format(mnn) == "mnn"
    pte = tmp_path / "model.pte"
    pte.write_bytes(b"\x3c\0\0\0ET12eh00" + bytes(16))  # ExecuTorch's flatbuffer identifier
    assert detect_format(pte) == "pte"
    litertlm = tmp_path / "model.litertlm"
    litertlm.write_bytes(b"LITERTLM\1\0\0\0" + bytes(16))
    assert detect_format(litertlm) == "litertlm"
    (mnn / "meltbench.json").write_text(json.dumps({"precision": "int4", "name": "gemma"}))
    info = resolve_model(str(mnn), formats=("mnn",)).info
    assert (info["quant"], info["name"], info["size_bytes"]) == ("int4", "gemma", 24)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.pte", b"\0" * 32, "not an ExecuTorch program"),
        ("model.pte", b"", "not an ExecuTorch program"),
        ("model.litertlm", b"TFL3" + bytes(28), "not a LiteRT-LM file"),
    ],
)
def test_runtime_files_with_wrong_magic_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        detect_format(path)


def test_mnn_folder_without_weights_or_with_broken_json_is_refused(tmp_path):
    empty_weights = write_mnn_folder(tmp_path / "a", weight=b"")
    with pytest.raises(UsageError, match=r"has no llm\.mnn\.weight"):
        detect_format(empty_weights)
    broken = write_mnn_folder(tmp_path / "b")
    (broken / "llm_config.json").write_text("[1, 2")
    with pytest.raises(UsageError, match=r"llm_config\.json is not readable JSON"):
        detect_format(broken)


def test_runtime_format_hint_names_the_convert_target(hf_folder):
    with pytest.raises(UsageError, match=r"meltbench convert \S+ --to mnn"):
        resolve_model(str(hf_folder), formats=("mnn",))
