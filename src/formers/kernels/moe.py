"""One C++ call for a mixture-of-experts block, or a whole MoE decoder layer, while decoding (moe.h).

The module path of a SparseMoeBlock runs ~15 small operators (router, softmax, top-k, renormalisation, the
per-expert calls, weighting, the sum) plus a host read of the chosen experts per layer; at 1 to 8 tokens
those cost more than streaming the chosen experts' weights. `moe_block` does router, routing and experts
in one call with no host sync; `moe_layer` (called by kernels/decode.py for a layer whose attention the
kernels handle) adds decode_layer's attention half in front, so a Mixtral layer is one call. Both apply to
float32 inference on CPU where every expert is a plain SiLU GatedMLP (gate/up separate or fused) without
biases and nothing is hooked; anything else returns None and the modules run.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import linear as kernel_linear


def _plain_linear(module: nn.Module | None) -> bool:
    return kernel_linear._plain(module) and module.bias is None and module.weight.dtype == torch.float32


def _expert_weights(expert: nn.Module) -> tuple[Tensor, Tensor, Tensor] | None:
    """(gate [I, C], up [I, C], down [C, I]) of a plain SiLU GatedMLP without biases, else None."""
    from ..modeling.mlp import GatedMLP

    if type(expert) is not GatedMLP or expert.act_fn is not F.silu or expert._forward_hooks or expert._forward_pre_hooks:
        return None
    if expert.fused:
        if not _plain_linear(expert.gate_up_proj) or not _plain_linear(expert.down_proj):
            return None
        gate, up = expert.gate_up_proj.weight.chunk(2, dim=0)  # contiguous row blocks of one tensor
        return gate, up, expert.down_proj.weight
    if not (_plain_linear(expert.gate_proj) and _plain_linear(expert.up_proj) and _plain_linear(expert.down_proj)):
        return None
    return expert.gate_proj.weight, expert.up_proj.weight, expert.down_proj.weight


def _block_args(block) -> tuple | None:
    """The kernel's arguments for SparseMoeBlock `block` (router, gate, up, down, shared expert, its gate, k,
    routing variant), or None where the kernel does not compute this block."""
    if block.training or (block.normalize_p is not None and block.normalize_p <= 0) or not _plain_linear(block.gate):
        return None
    if block._forward_hooks or block._forward_pre_hooks:
        return None
    experts = [_expert_weights(expert) for expert in block.experts]
    if any(weights is None or not all(w.is_contiguous() for w in weights) for weights in experts):
        return None
    shared: list[Tensor] = []
    if block.shared_expert is not None:
        weights = _expert_weights(block.shared_expert)
        if weights is None:
            return None
        shared = list(weights)
    shared_gate = block.shared_expert_gate
    if shared_gate is not None and not _plain_linear(shared_gate):
        return None
    gate, up, down = (list(column) for column in zip(*experts))
    return (block.gate.weight, gate, up, down, shared, None if shared_gate is None else shared_gate.weight,
            block.top_k, block.softmax_after_topk, block.norm_topk_prob, block.normalize_p or 0.0)


def _eligible(x: Tensor) -> bool:
    if torch.compiler.is_compiling():  # first: a traced graph must not guard on the sizes below
        return False
    return (x.dtype == torch.float32 and x.is_cpu and 0 < x.numel() <= kernel_linear.MAX_ROWS * x.shape[-1]
            and not torch.is_grad_enabled())


def moe_block(block, tokens: Tensor) -> tuple[Tensor, Tensor] | None:
    """(output [N, C], router logits [N, E]) of SparseMoeBlock `block` on `tokens` [N, C] through the kernel,
    or None where it does not apply (training, autograd, not float32 CPU, more than 8 rows, other modules)."""
    if not _eligible(tokens):
        return None
    kernels = kernel_linear._module()
    args = _block_args(block) if kernels else None
    return None if args is None else tuple(kernels.moe_block(tokens, *args))


def block_ok(block: nn.Module) -> bool:
    """Whether a layer's feed-forward block is one `moe_layer` can compute: a SparseMoeBlock whose forward is
    the shared one (a family that post-processes the router logits keeps its own forward)."""
    from ..modeling.moe import SparseMoeBlock

    return isinstance(block, SparseMoeBlock) and type(block).forward is SparseMoeBlock.forward


def moe_layer(layer, hidden: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, pos: int,
              mask: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """(hidden [B, 1, C], router logits [B, E]) of a decoder layer that kernels/decode.py found plain apart from
    its SparseMoeBlock, writing the new keys/values at `pos` of the cache buffers; None where it does not apply."""
    if not _eligible(hidden):
        return None
    kernels = kernel_linear._module()
    args = _block_args(layer.mlp) if kernels else None
    if args is None:
        return None
    attn, ln1, ln2 = layer.self_attn, layer.input_layernorm, layer.post_attention_layernorm
    out, logits = kernels.moe_layer(
        hidden, ln1.weight, ln1.variance_epsilon, attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight,
        attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias, attn.o_proj.weight, attn.o_proj.bias, ln2.weight,
        ln2.variance_epsilon, cos, sin, keys, values, pos, mask, attn.num_heads, attn.num_kv_heads,
        attn.spec.score_scale, *args)
    return out, logits
