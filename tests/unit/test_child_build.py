"""run_child: the converter runs in its own temporary folder and fails in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from meltbench.errors import UsageError
from meltbench.models.child_build import run_child

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the child imports tests.unit...
    return tmp_path


def test_files_the_converter_writes_where_it_runs_stay_out_of_the_callers_folder(
    here: Path,
) -> None:
    out = here / "cwd.txt"
    run_child("tests.unit.child_writes_cwd", {"out": str(out)}, "cannot convert")
    child_cwd = Path(out.read_text())
    assert child_cwd != here and child_cwd.name.startswith("meltbench-build-")
    assert not child_cwd.exists()  # removed with what the converter left there
    assert sorted(p.name for p in here.iterdir()) == ["cwd.txt"]


def test_a_failing_converter_is_one_line(here: Path) -> None:
    with pytest.raises(UsageError) as err:
        run_child("tests.unit.child_writes_cwd", {"out": str(here / "o"), "fail": True},
                  "cannot convert m")  # fmt: skip
    assert str(err.value) == "cannot convert m: ValueError: bad weights"
