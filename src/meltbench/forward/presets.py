"""Architectures of the forward tasks that build without a download (random weights).

Encoders (``--task encode``) are Hugging Face ``transformers`` configurations; the
shapes are copied from the ``config.json`` of ``bert-base-uncased``,
``google/bert_uncased_L-2_H-128_A-2`` (BERT-Tiny, Turc et al. 2019, "Well-Read Students
Learn Better"), ``roberta-base`` and ``xlm-roberta-base`` on the Hugging Face Hub. Vision
models (``--task classify``) are ``timm`` model names; their default resolution is
timm's ``pretrained_cfg["input_size"]`` (timm 1.0.31).

Pure data: importing this module imports neither torch nor transformers nor timm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_MODELS",
    "ENCODER_PRESETS",
    "TASKS",
    "VISION_PRESETS",
    "EncoderPreset",
    "VisionPreset",
    "max_seq_len",
    "task_of",
]

TASKS: tuple[str, ...] = ("encode", "classify")
"""The forward tasks: ``encode`` (token ids -> hidden states and pooled output) and
``classify`` (images -> logits)."""


@dataclass(frozen=True)
class EncoderPreset:
    """A BERT-family encoder shape.

    Attributes:
        model_type: the ``transformers`` model type (``bert``, ``roberta``,
            ``xlm-roberta``).
        config: the ``config.json`` fields that differ from that type's defaults and
            define the shape (hidden size, layers, heads, vocabulary, positions).
        description: one line for listings.
    """

    model_type: str
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def hf_config(self) -> dict[str, Any]:
        """The whole ``config.json`` dict: ``model_type`` plus the shape fields."""
        return {"model_type": self.model_type, **self.config}


@dataclass(frozen=True)
class VisionPreset:
    """A timm vision model.

    Attributes:
        timm_name: the name for ``timm.create_model``.
        resolution: default input height = width, pixels.
        description: one line for listings.
    """

    timm_name: str
    resolution: int
    description: str = ""


_BERT_BASE = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "pad_token_id": 0,
    "layer_norm_eps": 1e-12,
}
_ROBERTA_BASE = {
    **_BERT_BASE,
    "vocab_size": 50265,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "layer_norm_eps": 1e-5,
}

ENCODER_PRESETS: dict[str, EncoderPreset] = {
    "bert-base": EncoderPreset("bert", dict(_BERT_BASE), "BERT-base uncased shape, 110M"),
    "bert-tiny": EncoderPreset(
        "bert",
        {**_BERT_BASE, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 512},
        "BERT-Tiny shape (L=2, H=128, A=2), 4.4M",
    ),
    "roberta-base": EncoderPreset("roberta", dict(_ROBERTA_BASE), "RoBERTa-base shape, 125M"),
    "xlm-roberta-base": EncoderPreset(
        "xlm-roberta", {**_ROBERTA_BASE, "vocab_size": 250002}, "XLM-RoBERTa-base shape, 278M"
    ),
}  # fmt: skip
"""Encoder name -> shape."""

VISION_PRESETS: dict[str, VisionPreset] = {
    "mobilenetv4_conv_small": VisionPreset(
        "mobilenetv4_conv_small", 224, "MobileNetV4-Conv-S, 3.8M"
    ),
    "mobilenetv4_hybrid_medium": VisionPreset(
        "mobilenetv4_hybrid_medium", 256, "MobileNetV4-Hybrid-M, 11.1M"
    ),
    "mobilenetv3_large_100": VisionPreset(
        "mobilenetv3_large_100", 224, "MobileNetV3-Large 1.0, 5.5M"
    ),
    "efficientnet_b0": VisionPreset("efficientnet_b0", 224, "EfficientNet-B0, 5.3M"),
}  # fmt: skip
"""Vision model name -> timm name and default resolution (parameter counts: timm 1.0.31,
1000 classes)."""

DEFAULT_MODELS: dict[str, str] = {"encode": "bert-base", "classify": "mobilenetv4_conv_small"}
"""The model a forward task runs when ``--model`` is not given."""


def task_of(ref: str) -> str | None:
    """``encode`` for an encoder preset, ``classify`` for a vision preset, else None (a
    path, or a name that is no preset)."""
    if ref in ENCODER_PRESETS:
        return "encode"
    if ref in VISION_PRESETS:
        return "classify"
    return None


def max_seq_len(config: dict[str, Any]) -> int:
    """The longest sequence an encoder config takes, tokens.

    BERT numbers positions from 0, so it is ``max_position_embeddings``. RoBERTa and
    XLM-RoBERTa number them from ``pad_token_id + 1`` (``transformers``'
    ``create_position_ids_from_input_ids``), so two fewer: 512 for ``roberta-base``.

    Raises:
        KeyError: the config has no ``max_position_embeddings``.
    """
    n = int(config["max_position_embeddings"])
    if str(config.get("model_type", "")).replace("_", "-") in ("roberta", "xlm-roberta"):
        return n - int(config.get("pad_token_id", 1)) - 1
    return n
