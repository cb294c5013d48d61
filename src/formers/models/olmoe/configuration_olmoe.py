"""OlmoeConfig: field names and defaults of transformers 4.45 (OLMo's attention with q/k RMSNorms, a sparse
mixture of `num_experts` experts of which each token uses `num_experts_per_tok`)."""
from __future__ import annotations

from typing import Any

from ..decoder_config import DecoderConfig, GlobalHeadsMixin


class OlmoeConfig(GlobalHeadsMixin, DecoderConfig):
    model_type = "olmoe"

    vocab_size = 50304
    hidden_size = 2048
    intermediate_size = 2048  # each expert's width
    num_hidden_layers = 16
    num_attention_heads = 16
    max_position_embeddings = 4096
    rms_norm_eps = 1e-05
    pad_token_id: int | list[int] | None = 1
    bos_token_id: int | list[int] | None = None
    eos_token_id: int | list[int] | None = 50279
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    clip_qkv: float | None = None  # clamp q, k (after their norms) and v to [-clip_qkv, clip_qkv]
    num_experts_per_tok: int = 8
    num_experts: int = 64
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.01
    norm_topk_prob: bool = False  # renormalise the top-k routing weights to sum to 1
