"""MLX for the encoder task, through mlx-embeddings (the maintained MLX port of BERT,
RoBERTa and XLM-RoBERTa on PyPI: https://github.com/Blaizzy/mlx-embeddings).

It loads the same ``config.json`` and ``model.safetensors`` the PyTorch reference was
built from, so the per-run output check compares one set of weights in two frameworks.
Its attention mask uses ``-10000`` for masked keys where ``transformers`` uses the
dtype's minimum; with the all-ones mask of :func:`meltbench.forward.inputs.encoder_inputs`
no key is masked, and on this machine the largest difference was about 1e-6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meltbench.forward.engine import ForwardEngine

__all__ = ["MlxForward"]

_MODEL_TYPES = {"roberta": "xlm_roberta", "xlm-roberta": "xlm_roberta"}
"""transformers model type -> mlx-embeddings module (RoBERTa has no module of its own:
XLM-RoBERTa's architecture is RoBERTa's with a larger vocabulary)."""


class MlxForward(ForwardEngine):
    """MLX (mlx-embeddings' BERT / XLM-RoBERTa), float32, encoders only. Each pass
    converts the NumPy inputs to ``mx.array``, runs the model, forces evaluation
    (``mx.eval``, MLX being lazy) and converts the outputs back to NumPy."""

    name = "mlx"
    description = "MLX (mlx-embeddings) for the encoders: BERT, RoBERTa, XLM-RoBERTa"
    tasks = ("encode",)
    requirements = ("mlx", "mlx_embeddings")

    def load(self, manifest: dict[str, Any], task: str, ref: str) -> None:
        import mlx.core as mx
        from mlx_embeddings.utils import _get_classes, load_model

        def classes(config: dict[str, Any]) -> Any:
            kind = _MODEL_TYPES.get(config.get("model_type", ""), config.get("model_type"))
            return _get_classes({**config, "model_type": kind})

        self._mx = mx
        self._model = load_model(Path(manifest["model_dir"]), get_model_classes=classes)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        mx = self._mx
        out = self._model(
            mx.array(inputs["input_ids"]), attention_mask=mx.array(inputs["attention_mask"])
        )
        hidden, pooled = out.last_hidden_state, out.pooler_output
        mx.eval(hidden, pooled)
        return {"last_hidden_state": _numpy(hidden), "pooler_output": _numpy(pooled)}

    def info(self) -> dict[str, Any]:
        out = super().info()
        out["device"] = str(self._mx.default_device())
        out["n_threads"] = None  # MLX has no thread setting: --threads does not apply
        return out

    def unload(self) -> None:
        self._model = None


def _numpy(array: Any) -> Any:
    import numpy as np

    return np.array(array, copy=False)
