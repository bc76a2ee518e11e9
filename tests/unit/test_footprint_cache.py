"""read_footprint's disk cache: a second read of an unchanged GGUF does not parse it
again (parsing Gemma 3's header takes gguf 12 s on 2 cores), a changed file is re-read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from meltbench.models.footprint import ModelFootprint, read_footprint
from tests.unit.test_footprint import write_gguf


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def _refuse_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    import gguf

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the GGUF was parsed again")

    monkeypatch.setattr(gguf, "GGUFReader", refuse)


def test_an_unchanged_file_is_read_from_the_cache(tmp_path, cache_home, monkeypatch):
    path = tmp_path / "m.gguf"
    write_gguf(path)
    first = read_footprint(path)
    assert first.attention is not None and first.attention.n_swa
    assert len(list((cache_home / "meltbench" / "footprint").glob("*.json"))) == 1
    _refuse_parsing(monkeypatch)
    again = read_footprint(path)
    assert again == first
    assert ModelFootprint.from_dict(first.to_dict()) == first


def test_a_changed_file_is_read_again(tmp_path, cache_home):
    path = tmp_path / "m.gguf"
    write_gguf(path, tied=True)
    tied = read_footprint(path)
    write_gguf(path, tied=False)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    untied = read_footprint(path)
    assert tied.tied_embeddings and not untied.tied_embeddings
    assert untied.weights_bytes > tied.weights_bytes


def test_a_corrupt_cache_entry_is_replaced(tmp_path, cache_home):
    path = tmp_path / "m.gguf"
    write_gguf(path)
    first = read_footprint(path)
    (entry,) = (cache_home / "meltbench" / "footprint").glob("*.json")
    entry.write_text('{"architecture": "gemma3"}')
    assert read_footprint(path) == first
    assert ModelFootprint.from_dict(json.loads(entry.read_text())) == first
