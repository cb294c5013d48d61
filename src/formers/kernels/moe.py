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


def _weight(module: nn.Module | None, linear: type) -> Tensor | None:
    """The float32 contiguous weight of a plain formers Linear (`linear`) without bias or hooks, else None.
    (Read from the module's dicts: this runs for every expert of every layer at every decode step.)"""
    if type(module) is not linear or module._forward_hooks or module._forward_pre_hooks:
        return None
    params = module._parameters
    weight = params["weight"]
    if params.get("bias") is not None or weight.dtype != torch.float32 or not weight.is_contiguous():
        return None
    return weight


def _expert_weights(expert: nn.Module, linear: type) -> tuple[Tensor, Tensor, Tensor] | None:
    """(gate [I, C], up [I, C], down [C, I]) of a plain SiLU GatedMLP without biases, else None."""
    from ..modeling.mlp import GatedMLP

    if type(expert) is not GatedMLP or expert.act_fn is not F.silu or expert._forward_hooks or expert._forward_pre_hooks:
        return None
    modules = expert._modules
    down = _weight(modules["down_proj"], linear)
    if expert.fused:
        gate_up = _weight(modules["gate_up_proj"], linear)
        if gate_up is None or down is None:
            return None
        gate, up = gate_up.chunk(2, dim=0)  # contiguous row blocks of one tensor
        return gate, up, down
    gate, up = _weight(modules["gate_proj"], linear), _weight(modules["up_proj"], linear)
    return None if gate is None or up is None or down is None else (gate, up, down)


def _block_args(block) -> tuple | None:
    """The kernel's arguments for SparseMoeBlock `block` (router, gate, up, down, shared expert, its gate, k,
    routing variant), or None where the kernel does not compute this block."""
    linear = kernel_linear._linear_class()
    modules = block._modules
    if (block.training or (block.normalize_p is not None and block.normalize_p <= 0) or block._forward_hooks
            or block._forward_pre_hooks):
        return None
    router = _weight(modules["gate"], linear)
    experts = [_expert_weights(expert, linear) for expert in modules["experts"]._modules.values()]
    if router is None or None in experts:
        return None
    shared: list[Tensor] = []
    if modules.get("shared_expert") is not None:
        weights = _expert_weights(modules["shared_expert"], linear)
        if weights is None:
            return None
        shared = list(weights)
    shared_gate = modules.get("shared_expert_gate")
    if shared_gate is not None:
        shared_gate = _weight(shared_gate, linear)
        if shared_gate is None:
            return None
    gate, up, down = (list(column) for column in zip(*experts))
    return (router, gate, up, down, shared, shared_gate, block.top_k, block.softmax_after_topk, block.norm_topk_prob,
            block.normalize_p or 0.0)


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
    if any(m.weight.dtype != torch.float32 for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)):
        return None  # GGUF blocks (kernels/decode.py accepts them for Llama layers; moe_layer reads float32)
    out, logits = kernels.moe_layer(
        hidden, ln1.weight, ln1.variance_epsilon, attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight,
        attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias, attn.o_proj.weight, attn.o_proj.bias, ln2.weight,
        ln2.variance_epsilon, cos, sin, keys, values, pos, mask, attn.num_heads, attn.num_kv_heads,
        attn.spec.score_scale, *args)
    return out, logits
