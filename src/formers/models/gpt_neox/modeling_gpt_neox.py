"""GPT-NeoX (Pythia): q/k/v fused head by head in `query_key_value` ([h0: q k v, h1: q k v, ...]), rotary on
the first `rotary_pct` of each head, attention and MLP in parallel off two LayerNorms
(`use_parallel_residual`, else sequential), biases on every linear (attention ones optional), a GELU MLP
(`dense_h_to_4h`, `dense_4h_to_h`) and an untied head `embed_out`.

4.45's eager kernel scales the scores inside the matmul (baddbmm's alpha) and takes the softmax in the
scores' dtype; the kernel below does the same, so bf16/fp16 eager results match it too."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...loading.key_map import Fused, KeyMap, split_per_head
from ...modeling.attention import AttentionResult, AttentionSpec, KernelArgs
from ...modeling.decoder import DecoderForCausalLM, DecoderLayer, DecoderModel
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from .configuration_gpt_neox import GPTNeoXConfig

GPT_NEOX_KEYS = KeyMap(
    prefix="gpt_neox",
    renames=(("embed_in.weight", "embed_tokens.weight"),
             ("layers.{L}.attention.dense.{P}", "layers.{L}.self_attn.o_proj.{P}"),
             ("layers.{L}.mlp.dense_h_to_4h.{P}", "layers.{L}.mlp.up_proj.{P}"),
             ("layers.{L}.mlp.dense_4h_to_h.{P}", "layers.{L}.mlp.down_proj.{P}"),
             ("final_layer_norm.{P}", "norm.{P}")),
    head_renames=(("embed_out.weight", "lm_head.weight"),),
    fused=(Fused("layers.{L}.attention.query_key_value.{P}",
                 tuple(f"layers.{{L}}.self_attn.{p}_proj.{{P}}" for p in "qkv"),
                 *split_per_head(lambda config: config.num_attention_heads)),),
    # buffers older checkpoints (Pythia) saved: the causal mask, its fill value and the rotary frequencies
    ignored=("layers.{L}.attention.bias", "layers.{L}.attention.masked_bias",
             "layers.{L}.attention.rotary_emb.inv_freq"),
)


def neox_eager_attention(q, k, v, mask, args: KernelArgs) -> AttentionResult:
    """q [B, H, T, D], k/v [B, H, S, D] (no grouped heads in NeoX): scale * q.k inside baddbmm, future keys
    masked twice, softmax in the scores' dtype, as 4.45's eager path computes them."""
    batch, heads, length, dim = q.shape
    keys = k.shape[2]
    scores = torch.baddbmm(q.new_zeros(batch * heads, length, keys), q.reshape(batch * heads, length, dim),
                           k.reshape(batch * heads, keys, dim).transpose(1, 2), beta=1.0, alpha=args.scale)
    scores = scores.view(batch, heads, length, keys)
    # 4.45 also fills future keys with the dtype's minimum before adding the mask (so they reach -inf): the
    # same values on real rows, and the same uniform attention over the past on left-padded rows
    causal = torch.ones(length, keys, dtype=torch.bool, device=q.device).tril(keys - length)
    scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
    if mask is not None:
        scores = scores + mask[:, :, :, :keys]
    weights = F.softmax(scores, dim=-1).to(v.dtype)
    weights = F.dropout(weights, p=args.dropout, training=args.dropout > 0)
    return torch.matmul(weights, v), weights


class GPTNeoXModel(DecoderModel):
    config_class = GPTNeoXConfig
    checkpoint_keys = GPT_NEOX_KEYS

    @staticmethod
    def layer_spec(config: GPTNeoXConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_attention_heads, config.head_dim,
                             qkv_bias=config.attention_bias, o_bias=config.attention_bias,
                             eager_kernel=neox_eager_attention)

    @classmethod
    def make_layer(cls, config: GPTNeoXConfig, layer_idx: int) -> nn.Module:
        residual = "parallel2" if config.use_parallel_residual else "sequential"
        return DecoderLayer(cls.make_attention(config, layer_idx), cls.make_mlp(config, layer_idx),
                            lambda: cls.make_norm(config), residual)

    @classmethod
    def make_norm(cls, config: GPTNeoXConfig) -> nn.Module:
        return LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @classmethod
    def make_mlp(cls, config: GPTNeoXConfig, layer_idx: int) -> nn.Module:
        return MLP(config.hidden_size, config.intermediate_size, config.hidden_act)


class GPTNeoXForCausalLM(DecoderForCausalLM):
    config_class = GPTNeoXConfig
    base_model_class = GPTNeoXModel
    checkpoint_keys = GPT_NEOX_KEYS
