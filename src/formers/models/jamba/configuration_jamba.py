"""JambaConfig: field names and defaults of transformers 4.45 (Jamba-v0.1's shape).

Layer i is an attention layer when i % attn_layer_period == attn_layer_offset, a Mamba layer otherwise;
its feed-forward is a mixture of `num_experts` experts when i % expert_layer_period == expert_layer_offset,
a dense gated MLP otherwise (`layers_block_type`, `layers_num_experts`, as 4.45 names them).
"""
from __future__ import annotations

import math

from ...configuration_utils import PretrainedConfig
from ...errors import ConfigError
from ..decoder_config import GlobalHeadsMixin


class JambaConfig(GlobalHeadsMixin, PretrainedConfig):
    model_type = "jamba"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 65536
    tie_word_embeddings: bool = False
    hidden_size: int = 4096
    intermediate_size: int = 14336  # the dense MLP's and each expert's
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 8  # None: as many as the attention heads
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    num_logits_to_keep: int | None = 1
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    pad_token_id: int | list[int] | None = 0
    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2
    sliding_window: int | None = None  # 4.45 reads it only in its flash-attention path (see layer_sliding_window)
    max_position_embeddings: int = 262144
    attention_dropout: float = 0.0
    num_experts_per_tok: int = 2
    num_experts: int = 16
    expert_layer_period: int = 2
    expert_layer_offset: int = 1
    attn_layer_period: int = 8
    attn_layer_offset: int = 4
    use_mamba_kernels: bool = True  # 4.45's CUDA kernels; formers' own scan runs whatever this says
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 2
    mamba_dt_rank: int | str = "auto"  # "auto": ceil(hidden_size / 16), resolved on construction as 4.45
    mamba_conv_bias: bool = True
    mamba_proj_bias: bool = False

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for kind in ("attn", "expert"):
            period, offset = getattr(self, f"{kind}_layer_period"), getattr(self, f"{kind}_layer_offset")
            if not 0 <= offset < period:
                raise ConfigError(f"JambaConfig field '{kind}_layer_offset': expected 0 <= offset < "
                                  f"{kind}_layer_period ({period}), got {offset}")
        if self.mamba_dt_rank == "auto":
            self.mamba_dt_rank = math.ceil(self.hidden_size / 16)
        elif isinstance(self.mamba_dt_rank, str):
            raise ConfigError(f"JambaConfig field 'mamba_dt_rank': expected an int or 'auto', got {self.mamba_dt_rank!r}")
        self.check_heads_divide_hidden()

    @property
    def layers_block_type(self) -> list[str]:
        """"attention" or "mamba" for every layer."""
        return ["attention" if i % self.attn_layer_period == self.attn_layer_offset else "mamba"
                for i in range(self.num_hidden_layers)]

    @property
    def layers_num_experts(self) -> list[int]:
        """Experts of every layer's feed-forward (1: a dense MLP)."""
        return [self.num_experts if i % self.expert_layer_period == self.expert_layer_offset else 1
                for i in range(self.num_hidden_layers)]
