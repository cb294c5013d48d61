"""Phi-3 / Phi-3.5: the Llama layout with q/k/v fused in `qkv_proj` and gate/up fused in `gate_up_proj` (kept
fused: one matmul each, and the checkpoint's keys as they are), and LongRoPE scaling whose factors follow the length being
attended: the short factors up to `original_max_position_embeddings`, the long ones past it.

Because the factors switch mid-generation, keys cached before the switch were rotated with the short ones;
4.45 drops its cache and feeds the whole sequence again the first time generation crosses that length, and
`needs_cache_refill` asks generate() to do the same. `sliding_window` has no effect outside flash attention
in 4.45 (see the config)."""
from __future__ import annotations

import torch
from torch import nn

from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.mlp import GatedMLP
from ...modeling.rope import ROPE_INIT_FUNCTIONS, rotary_tables
from .configuration_phi3 import Phi3Config


class Phi3LongRopeEmbedding(nn.Module):
    """position_ids [B, T] and the attended length -> (cos, sin) [B, T, D]: short factors while the attended
    length is at most `original_max_position_embeddings`, long ones past it (chosen on the device, no sync)."""

    def __init__(self, config: Phi3Config):
        super().__init__()
        self.original_length = config.original_max_position_embeddings
        longrope = ROPE_INIT_FUNCTIONS["longrope"]
        with torch.device("cpu"):  # real tables even when the model is being built on `meta`
            short, self.attention_scaling = longrope(config, seq_len=self.original_length)
            long, _ = longrope(config, seq_len=self.original_length + 1)
        self.register_buffer("short_inv_freq", short, persistent=False)
        self.register_buffer("long_inv_freq", long, persistent=False)

    @torch.no_grad()
    def forward(self, like: torch.Tensor, position_ids: torch.Tensor,
                attended_length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = torch.where(attended_length > self.original_length, self.long_inv_freq, self.short_inv_freq)
        return rotary_tables(like, position_ids, inv_freq, self.attention_scaling)


class Phi3Model(DecoderModel):
    config_class = Phi3Config

    @staticmethod
    def layer_spec(config: Phi3Config, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim, fused_qkv=True,
                             sliding_window=config.layer_sliding_window(layer_idx))

    @classmethod
    def make_mlp(cls, config: Phi3Config, layer_idx: int) -> nn.Module:
        return GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act, fused=True)

    @classmethod
    def make_rotary(cls, config: Phi3Config) -> nn.Module:
        return Phi3LongRopeEmbedding(config) if config.rope_scaling is not None else super().make_rotary(config)

    def rotary_tables(self, hidden, position_ids, cache_position):
        if not isinstance(self.rotary_emb, Phi3LongRopeEmbedding):
            return super().rotary_tables(hidden, position_ids, cache_position)
        # 4.45 picks the factors by the cached plus new length, i.e. the newest cache position + 1
        return self.rotary_emb(hidden, position_ids, cache_position[-1:] + 1)


class Phi3ForCausalLM(DecoderForCausalLM):
    config_class = Phi3Config
    base_model_class = Phi3Model

    def needs_cache_refill(self, cached_length: int, total_length: int) -> bool:
        """Once, when generation first crosses `original_max_position_embeddings` with a cache filled before it:
        that cache holds keys rotated with the short factors, so generate() refills it with the long ones."""
        original = self.config.original_max_position_embeddings
        return self.config.rope_scaling is not None and 0 < cached_length <= original < total_length
