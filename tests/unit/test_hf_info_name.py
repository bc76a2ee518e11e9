"""A Hugging Face folder's model name: the config's model id, else the folder's name."""

from __future__ import annotations

import json

import pytest

from meltbench.models.hf_info import model_name, read_hf_info


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"_name_or_path": "Gemma 3 270m"}, "Gemma 3 270m"),
        ({"_name_or_path": "google/gemma-3-270m"}, "google/gemma-3-270m"),
        ({"_model_name_or_path": "Qwen/Qwen2-0.5B"}, "Qwen/Qwen2-0.5B"),  # transformers 5
        ({"_name_or_path": "/home/me/models/qwen"}, "hf"),  # a local path: the folder
        ({"_name_or_path": ""}, "hf"),
        ({}, "hf"),
    ],
)
def test_model_name(tmp_path, config, expected):
    folder = tmp_path / "hf"
    assert model_name(config, folder) == expected


def test_read_hf_info_uses_it(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "Gemma 3 270m"}))
    assert read_hf_info(folder)["name"] == "Gemma 3 270m"
