"""A resolved model: what the worker hands to ``Engine.load`` (format and local path)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ModelHandle"]


@dataclass(frozen=True)
class ModelHandle:
    """What the worker hands to ``Engine.load``.

    Attributes:
        ref: what the user passed (alias, path, server model name, preset).
        format: ``gguf`` (a GGUF file), ``hf`` (a Hugging Face folder: config.json +
            safetensors), ``onnx-genai`` (an ONNX Runtime GenAI folder), ``mnn`` (an
            MNN-LLM folder), ``pte`` (an ExecuTorch program), ``litertlm`` (a LiteRT-LM
            file), ``config``
            (an architecture to build with random weights: ``path`` is a config.json),
            ``remote`` (a model served over HTTP: ``path`` is None).
        path: local file or folder, or None for ``remote``.
    """

    ref: str
    format: str
    path: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-ready)."""
        return asdict(self)
