"""Every architecture preset builds a transformers config and model of the stated size.

The models are built on torch's ``meta`` device (shapes only, no memory, no init), so
this takes a few seconds. Parameter counts are those of transformers 5.23 and are also
the counts stated in the comments of ``meltbench/models/presets.py``.
"""

from __future__ import annotations

import pytest

from meltbench.models.presets import PRESETS

#: sum(p.numel() for p in model.parameters()) of each preset, tied tensors counted once.
EXPECTED_PARAMS = {
    "llama": 56_369_664,
    "qwen2": 56_244_736,
    "gemma3": 46_811_648,
    "mamba": 29_946_368,
    "mamba2": 29_616_000,
    "falcon_h1": 53_729_152,
    "nemotron_h": 46_333_120,
}
#: model class transformers picks for each preset.
EXPECTED_CLASS = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "mamba": "MambaForCausalLM",
    "mamba2": "Mamba2ForCausalLM",
    "falcon_h1": "FalconH1ForCausalLM",
    "nemotron_h": "NemotronHForCausalLM",
}


def test_every_preset_is_listed():
    assert set(PRESETS) == set(EXPECTED_PARAMS)
    assert {p["model_type"] for p in PRESETS.values()} >= {"gemma3_text", "mamba", "mamba2"}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_preset_builds_with_the_stated_size(name):
    import torch
    import transformers

    kwargs = dict(PRESETS[name])
    config = transformers.AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    assert config.model_type == PRESETS[name]["model_type"]
    assert config.vocab_size == 32000
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert type(model).__name__ == EXPECTED_CLASS[name]
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]
