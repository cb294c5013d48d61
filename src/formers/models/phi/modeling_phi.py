"""Phi (phi-1, phi-1.5, phi-2): attention and MLP in parallel off one LayerNorm (`h + attn(ln(h)) + mlp(ln(h))`),
biases on q/k/v, on the output projection (`dense`), on the GELU MLP (`fc1`, `fc2`) and on the LM head, rotary
on the first `partial_rotary_factor` of each head, an optional LayerNorm over every query and key head
(`qk_layernorm`) and a final LayerNorm named `final_layernorm`.

4.45's eager kernel computes the scores from float32 queries and keys (phi-2 overflows in half precision);
the kernel below does the same. Its `qk_layernorm` normalizes the flat projection with a LayerNorm sized
head_dim, which runs only with one head; formers applies it head by head, the same where 4.45 runs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionResult, AttentionSpec, KernelArgs, repeat_kv
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.layers import Linear
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from .configuration_phi import PhiConfig

PHI_KEYS = KeyMap(renames=(("layers.{L}.self_attn.dense.{P}", "layers.{L}.self_attn.o_proj.{P}"),
                           ("layers.{L}.self_attn.q_layernorm.{P}", "layers.{L}.self_attn.q_norm.{P}"),
                           ("layers.{L}.self_attn.k_layernorm.{P}", "layers.{L}.self_attn.k_norm.{P}"),
                           ("layers.{L}.mlp.fc1.{P}", "layers.{L}.mlp.up_proj.{P}"),
                           ("layers.{L}.mlp.fc2.{P}", "layers.{L}.mlp.down_proj.{P}"),
                           ("final_layernorm.{P}", "norm.{P}")))


def phi_eager_attention(q, k, v, mask, args: KernelArgs) -> AttentionResult:
    """q [B, H, T, D], k/v [B, Hkv, S, D]: scores from float32 q and k, softmax in float32, weights cast to v's
    dtype (4.45's eager path)."""
    k, v = repeat_kv(k, args.n_rep), repeat_kv(v, args.n_rep)
    scores = torch.matmul(q.float(), k.float().transpose(2, 3)) * args.scale
    if mask is not None:
        scores = scores + mask[:, :, :, : k.shape[-2]]
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
    weights = F.dropout(weights, p=args.dropout, training=args.dropout > 0)
    return torch.matmul(weights, v), weights


class PhiModel(DecoderModel):
    config_class = PhiConfig
    checkpoint_keys = PHI_KEYS
    residual = "parallel"

    @staticmethod
    def layer_spec(config: PhiConfig, layer_idx: int) -> AttentionSpec:
        def head_norms() -> tuple[nn.Module, nn.Module]:
            return (LayerNorm(config.head_dim, eps=config.layer_norm_eps),
                    LayerNorm(config.head_dim, eps=config.layer_norm_eps))
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=True, o_bias=True, qk_norm=head_norms if config.qk_layernorm else None,
                             eager_kernel=phi_eager_attention)

    @classmethod
    def make_norm(cls, config: PhiConfig) -> nn.Module:
        return LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @classmethod
    def make_mlp(cls, config: PhiConfig, layer_idx: int) -> nn.Module:
        return MLP(config.hidden_size, config.intermediate_size, config.hidden_act)


class PhiForCausalLM(DecoderForCausalLM):
    config_class = PhiConfig
    base_model_class = PhiModel
    checkpoint_keys = PHI_KEYS

    @classmethod
    def make_lm_head(cls, config: PhiConfig) -> nn.Module:
        return Linear(config.hidden_size, config.vocab_size, bias=True)
