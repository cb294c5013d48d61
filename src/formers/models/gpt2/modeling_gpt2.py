"""GPT-2: pre-LayerNorm blocks with learned absolute positions, no rotary, a tanh-GELU MLP and biases
everywhere. Checkpoints keep Conv1D weights transposed ([in, out]) and q/k/v fused in `c_attn`; the
key map below splits and transposes them at load and restores that layout at save."""
from __future__ import annotations

import torch
from torch import nn

from ...loading.key_map import Fused, KeyMap, split_sizes
from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.layers import Embedding
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from .configuration_gpt2 import GPT2Config

GPT2_KEYS = KeyMap(
    prefix="transformer",
    renames=(("wte.weight", "embed_tokens.weight"), ("wpe.weight", "embed_positions.weight"),
             ("h.{L}.ln_1.{P}", "layers.{L}.input_layernorm.{P}"),
             ("h.{L}.ln_2.{P}", "layers.{L}.post_attention_layernorm.{P}"),
             ("h.{L}.attn.c_proj.{P}", "layers.{L}.self_attn.o_proj.{P}"),
             ("h.{L}.mlp.c_fc.{P}", "layers.{L}.mlp.up_proj.{P}"),
             ("h.{L}.mlp.c_proj.{P}", "layers.{L}.mlp.down_proj.{P}"),
             ("ln_f.{P}", "norm.{P}")),
    fused=(Fused("h.{L}.attn.c_attn.{P}", tuple(f"layers.{{L}}.self_attn.{p}_proj.{{P}}" for p in "qkv"),
                 *split_sizes(lambda config: [config.n_embd] * 3)),),
    transposed=("h.{L}.attn.c_attn.weight", "h.{L}.attn.c_proj.weight", "h.{L}.mlp.c_fc.weight",
                "h.{L}.mlp.c_proj.weight"),
    ignored=("h.{L}.attn.bias", "h.{L}.attn.masked_bias"),  # causal-mask buffers older checkpoints saved
)


CONV1D_LAYERS = {"self_attn.": "conv1d", "mlp.": "conv1d"}  # 4.45 holds every projection as a Conv1D


class GPT2Model(DecoderModel):
    config_class = GPT2Config
    reference_layer_kinds = CONV1D_LAYERS
    checkpoint_keys = GPT2_KEYS

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.embed_positions = Embedding(config.n_positions, config.n_embd)

    @staticmethod
    def layer_spec(config: GPT2Config, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.n_head, config.n_head, config.head_dim, qkv_bias=True, o_bias=True,
                             scale=config.score_scale(layer_idx), rotary=None)

    @classmethod
    def make_norm(cls, config: GPT2Config) -> nn.Module:
        return LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    @classmethod
    def make_mlp(cls, config: GPT2Config, layer_idx: int) -> nn.Module:
        return MLP(config.n_embd, config.intermediate_size, config.activation_function)

    @classmethod
    def make_rotary(cls, config: GPT2Config) -> None:
        return None

    def embed_inputs(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return inputs_embeds + self.embed_positions(position_ids)


class GPT2LMHeadModel(DecoderForCausalLM):
    config_class = GPT2Config
    reference_layer_kinds = CONV1D_LAYERS
    base_model_class = GPT2Model
    checkpoint_keys = GPT2_KEYS
