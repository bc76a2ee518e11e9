"""Architecture presets for ``--weights random``: small, realistic shapes per family.

Each preset is the ``model_type`` plus config arguments for ``transformers.AutoConfig``
(``AutoConfig.for_model(model_type, **kwargs)``); the transformers engine builds the model
from it with random weights (seeded), so latency and memory can be measured for
architectures whose weights are not available offline. Sizes are chosen to run on a 2-core
CPU in seconds: width 512, 8 blocks, a 32,000-token vocabulary for every preset (so the
embedding and LM head cost the same everywhere), the family's own block structure
(attention/GQA ratio, MLP type, SSM mixer, layer pattern). Parameter counts are those of
transformers 5.23 (``sum(p.numel() for p in model.parameters())``, tied tensors once);
``tests/unit/test_presets.py`` checks each preset's model class and parameter count.
Measured in float32 with one thread on a shared 2-core machine (transformers engine):
a 512-token prompt at 350 (falcon_h1) to 1,240 (gemma3) tok/s, decode at 19 (falcon_h1)
to 56 (mamba) tok/s; SSM layers run transformers' reference PyTorch code on CPU.

For real sizes, pass a model's ``config.json`` instead of a preset name.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS"]

_VOCAB = 32000

PRESETS: dict[str, dict[str, Any]] = {
    # Llama 2/3 block: GQA 8/4 heads, SwiGLU MLP, untied LM head. 56.4M parameters.
    "llama": {
        "model_type": "llama",
        "hidden_size": 512,
        "intermediate_size": 1408,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "vocab_size": _VOCAB,
        "max_position_embeddings": 4096,
    },
    # Qwen2/2.5 block: QKV bias, GQA 8/2 heads, SwiGLU MLP 5.5x wide, tied embeddings
    # (as Qwen2.5-0.5B). 56.2M parameters.
    "qwen2": {
        "model_type": "qwen2",
        "hidden_size": 512,
        "intermediate_size": 2816,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": _VOCAB,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
    },
    # Gemma 3 text block (as Gemma 3 270M, text-only Gemma3TextConfig): 4 query heads, 1 KV
    # head, head_dim 128, GeLU-tanh gated MLP, QK norm, 4 norms per block, sliding-window
    # (512) layers with a global layer every 6th, tied embeddings. 46.8M parameters.
    "gemma3": {
        "model_type": "gemma3_text",
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 128,
        "query_pre_attn_scalar": 128,
        "sliding_window": 512,
        "vocab_size": _VOCAB,
        "max_position_embeddings": 32768,
    },
    # Mamba (v1) block: selective scan, state 16, expand 2, conv 4; tied (as mamba-130m).
    # 29.9M parameters.
    "mamba": {
        "model_type": "mamba",
        "hidden_size": 512,
        "num_hidden_layers": 8,
        "state_size": 16,
        "expand": 2,
        "vocab_size": _VOCAB,
    },
    # Mamba2 block: SSD with 16 heads of 64, one group, state 64, chunk 256; tied.
    # 29.6M parameters.
    "mamba2": {
        "model_type": "mamba2",
        "hidden_size": 512,
        "num_hidden_layers": 8,
        "expand": 2,
        "num_heads": 16,
        "head_dim": 64,
        "n_groups": 1,
        "state_size": 64,
        "chunk_size": 256,
        "vocab_size": _VOCAB,
        "tie_word_embeddings": True,
    },
    # Falcon-H1 (parallel hybrid): every block runs GQA attention (8/2 heads) and a Mamba2
    # mixer (16 heads of 64, state 64) side by side, then a SwiGLU MLP; tied.
    # 53.7M parameters.
    "falcon_h1": {
        "model_type": "falcon_h1",
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "mamba_d_ssm": 1024,
        "mamba_n_heads": 16,
        "mamba_d_head": 64,
        "mamba_n_groups": 1,
        "mamba_d_state": 64,
        "mamba_chunk_size": 256,
        "vocab_size": _VOCAB,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
    },
    # Nemotron-H (interleaved hybrid): Mamba2 (M), squared-ReLU MLP (-) and GQA attention
    # (*) layers in the pattern M-M*M-M- (8 layers: 4 Mamba2, 3 MLP, 1 attention); tied.
    # 46.3M parameters.
    "nemotron_h": {
        "model_type": "nemotron_h",
        "hidden_size": 512,
        "hybrid_override_pattern": "M-M*M-M-",
        "num_hidden_layers": 8,
        "intermediate_size": 2048,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "mamba_num_heads": 16,
        "mamba_head_dim": 64,
        "n_groups": 1,
        "ssm_state_size": 64,
        "chunk_size": 256,
        "vocab_size": _VOCAB,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
    },
}
