"""The build record meltbench writes beside the models it converts, and the dtype check."""

from __future__ import annotations

from pathlib import Path

import pytest

from meltbench.errors import UsageError
from meltbench.models.build_record import (
    check_dtype,
    read_build_record,
    record_path,
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
