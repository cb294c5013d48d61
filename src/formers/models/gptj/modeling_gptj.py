"""GPT-J: attention and MLP in parallel off one LayerNorm (`ln_1`), interleaved rotary ([x0, x1] pairs) on the
first `rotary_dim` dims of each head, q/k/v/out projections without bias, a GELU MLP with biases
(`fc_in`, `fc_out`) and an LM head with a bias.

4.45's precision, kept here: the rotary angles are float32 from frequencies rounded to the model dtype (its
sin/cos table is built in the default dtype of the load), q and k are rotated in float32 and stay float32 (keys
are cached so), scores are float32 divided by sqrt(head_dim) rounded to the model dtype, and the softmax weights
are cast to v's dtype. 4.45 has no SDPA path for GPT-J and uses eager by default: so does formers; an explicit
"sdpa" runs formers' SDPA kernel with q and k cast to v's dtype (checked against 4.45's eager path)."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionResult, AttentionSpec, KernelArgs, sdpa_attention
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.layers import Linear
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from .configuration_gptj import GPTJConfig

GPTJ_KEYS = KeyMap(
    prefix="transformer",
    renames=(("wte.weight", "embed_tokens.weight"),
             ("h.{L}.ln_1.{P}", "layers.{L}.input_layernorm.{P}"),
             ("h.{L}.attn.out_proj.{P}", "layers.{L}.self_attn.o_proj.{P}"),
             ("h.{L}.attn.{N}.{P}", "layers.{L}.self_attn.{N}.{P}"),  # q_proj, k_proj, v_proj
             ("h.{L}.mlp.fc_in.{P}", "layers.{L}.mlp.up_proj.{P}"),
             ("h.{L}.mlp.fc_out.{P}", "layers.{L}.mlp.down_proj.{P}"),
             ("ln_f.{P}", "norm.{P}")),
    ignored=("h.{L}.attn.bias", "h.{L}.attn.masked_bias"),  # causal-mask buffers older checkpoints saved
)


@lru_cache(maxsize=None)
def _frequencies(dim: int, dtype: torch.dtype) -> torch.Tensor:
    """1 / 10000^(2i/dim), each step rounded to `dtype` as 4.45 computes it in the default dtype; float32 out."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").to(dtype) / dim
    return (1.0 / (10000 ** exponents)).float()


class GPTJRotaryEmbedding(nn.Module):
    """position_ids [B, T] -> (cos, sin) [B, T, dim], float32, interleaved ([f0, f0, f1, f1, ...])."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self._inv_freq: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    @torch.no_grad()
    def forward(self, like: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (like.dtype, like.device)
        if key not in self._inv_freq:
            self._inv_freq[key] = _frequencies(self.dim, like.dtype).to(like.device)
        angles = position_ids[:, :, None].float() * self._inv_freq[key][None, None, :]  # [B, T, dim/2]
        angles = angles.repeat_interleave(2, dim=-1)
        return angles.cos(), angles.sin()


@lru_cache(maxsize=None)
def _score_divisor(head_dim: int, dtype: torch.dtype) -> float:
    """sqrt(head_dim) in float32, rounded to the model dtype (4.45 stores it in the default dtype of the load)."""
    return float(torch.tensor(head_dim, dtype=torch.float32).sqrt().to(dtype))


def gptj_eager_attention(q, k, v, mask, args: KernelArgs) -> AttentionResult:
    """q [B, H, T, D], k/v [B, H, S, D]: float32 scores and softmax, weights cast to v's dtype (as 4.45)."""
    scores = torch.matmul(q.float(), k.float().transpose(2, 3)) / _score_divisor(q.shape[-1], v.dtype)
    if mask is not None:
        scores = scores + mask[:, :, :, : k.shape[-2]]
    weights = F.softmax(scores, dim=-1).to(v.dtype)
    weights = F.dropout(weights, p=args.dropout, training=args.dropout > 0)
    return torch.matmul(weights, v), weights


def gptj_sdpa_attention(q, k, v, mask, args: KernelArgs) -> AttentionResult:
    return sdpa_attention(q.to(v.dtype), k.to(v.dtype), v, mask, args)


class _GPTJLayout:
    config_class = GPTJConfig
    checkpoint_keys = GPTJ_KEYS
    default_attn_implementation = "eager"  # 4.45 has no SDPA path for GPT-J


class GPTJModel(_GPTJLayout, DecoderModel):
    residual = "parallel"

    @staticmethod
    def layer_spec(config: GPTJConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.n_head, config.n_head, config.head_dim, rotary="interleaved",
                             eager_kernel=gptj_eager_attention, sdpa_kernel=gptj_sdpa_attention)

    @classmethod
    def make_norm(cls, config: GPTJConfig) -> nn.Module:
        return LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    @classmethod
    def make_mlp(cls, config: GPTJConfig, layer_idx: int) -> nn.Module:
        return MLP(config.n_embd, config.intermediate_size, config.activation_function)

    @classmethod
    def make_rotary(cls, config: GPTJConfig) -> nn.Module:
        if config.rotary_dim is None and config.n_head != 1:
            raise ConfigError(f"GPTJConfig: rotary_dim=None rotates n_embd ({config.n_embd}) dims of each head, "
                              f"which needs n_head == 1 (got {config.n_head}); set rotary_dim")
        return GPTJRotaryEmbedding(config.rotary_dim or config.n_embd)


class GPTJForCausalLM(_GPTJLayout, DecoderForCausalLM):
    base_model_class = GPTJModel

    @classmethod
    def make_lm_head(cls, config: GPTJConfig) -> nn.Module:
        return Linear(config.n_embd, config.vocab_size, bias=True)
