"""The build record meltbench writes beside the models it converts, and the dtype check."""

from __future__ import annotations

from pathlib import Path

import pytest

from meltbench.errors import UsageError
from meltbench.models.build_record import (
    check_dtype,
    read_build_record,
    record_path,
    source_fields,
    write_build_record,
)


def test_a_folder_keeps_its_record_inside_and_a_file_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "mnn"
    folder.mkdir()
    assert record_path(folder) == folder / "meltbench.json"
    assert record_path(tmp_path / "model.pte") == tmp_path / "model.json"


def test_written_record_reads_back(tmp_path: Path) -> None:
    folder = tmp_path / "onnx"
    folder.mkdir()
    write_build_record(folder, {"precision": "int4", "n_params": 3})
    assert (folder / "meltbench.json").read_text() == (
        '{\n  "precision": "int4",\n  "n_params": 3\n}\n'
    )
    assert read_build_record(folder) == {"precision": "int4", "n_params": 3}


@pytest.mark.parametrize("text", [None, "not json", "[1, 2]"])
def test_no_record_or_a_bad_one_reads_as_empty(tmp_path: Path, text: str | None) -> None:
    model = tmp_path / "model.pte"
    model.write_bytes(b"\0" * 8)
    if text is not None:
        (tmp_path / "model.json").write_text(text)
    assert read_build_record(model) == {}


def test_a_dtype_other_than_the_built_precision_is_refused() -> None:
    model = Path("/m/model.pte")
    with pytest.raises(UsageError) as err:
        check_dtype("float32", {"precision": "8da4w"}, model, "pte")
    assert str(err.value) == (
        "--dtype float32 but /m/model.pte holds 8da4w weights; drop --dtype or build a "
        "float32 model with: meltbench convert MODEL --to pte --dtype float32"
    )


@pytest.mark.parametrize(
    ("dtype", "record"),
    [(None, {"precision": "int4"}), ("int4", {"precision": "int4"}), ("int8", {})],
)
def test_no_dtype_the_same_dtype_or_no_record_pass(dtype: str | None, record: dict) -> None:
    check_dtype(dtype, record, Path("/m"), "mnn")  # no error


def test_source_fields_of_a_multimodal_config_read_its_text_config(tmp_path: Path) -> None:
    hf = tmp_path / "gemma"
    hf.mkdir()
    config = {"_name_or_path": "Gemma 3 270m", "architectures": ["Gemma3ForCausalLM"],
              "text_config": {"vocab_size": 262144, "bos_token_id": 2}}  # fmt: skip
    assert source_fields(hf, config) == {
        "source": str(hf.resolve()),
        "name": "Gemma 3 270m",
        "architecture": "Gemma3ForCausalLM",
        "vocab_size": 262144,
        "bos_token_id": 2,
    }
    bare = {"model_type": "llama", "vocab_size": 32, "bos_token_id": 1}
    assert source_fields(hf, bare)["name"] == "gemma"
    assert source_fields(hf, bare)["architecture"] == "llama"
    assert source_fields(hf, bare)["bos_token_id"] == 1
