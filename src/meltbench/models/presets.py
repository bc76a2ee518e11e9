"""Architecture presets for ``--weights random``: small, realistic shapes per family.

Each preset is the ``model_type`` plus config arguments for ``transformers.AutoConfig``;
the transformers engine builds the model from it with random weights (seeded), so
latency and memory can be measured for architectures whose weights are not available
offline. Sizes are chosen to run on a 2-core CPU in seconds.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

PRESETS: dict[str, dict[str, Any]] = {
    "llama": {
        "model_type": "llama",
        "hidden_size": 512,
        "intermediate_size": 1408,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
    },
}
