"""MixtralConfig: field names and defaults of transformers 4.45."""
from __future__ import annotations

from ..decoder_config import DecoderConfig


class MixtralConfig(DecoderConfig):
    model_type = "mixtral"

    intermediate_size = 14336  # each expert's
    num_key_value_heads = 8
    max_position_embeddings = 4096 * 32
    rms_norm_eps = 1e-5
    rope_theta = 1e6
    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2
    sliding_window: int | None = None
    num_experts_per_tok: int = 2
    num_local_experts: int = 8
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    router_jitter_noise: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        """Global attention: 4.45.2 applies Mixtral's `sliding_window` only in its flash-attention path; its
        eager and SDPA paths, the ones formers matches, attend to every position."""
        return None
