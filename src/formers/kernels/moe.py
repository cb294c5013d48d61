"""One C++ call for a mixture-of-experts block while decoding (kernels.cpp `moe_block`, moe.h).

The module path of a SparseMoeBlock runs ~15 small operators (router, softmax, top-k, renormalisation, the
per-expert calls, weighting, the sum) plus a host read of the chosen experts per layer; at 1 to 8 tokens
those cost more than streaming the chosen experts' weights. `moe_block` does router, routing and experts
in one call with no host sync, for float32 inference on CPU where every expert is a plain SiLU GatedMLP
(gate/up separate or fused) without biases; anything else returns None and the block runs its modules.
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


def moe_block(block, tokens: Tensor) -> tuple[Tensor, Tensor] | None:
    """(output [N, C], router logits [N, E]) of SparseMoeBlock `block` on `tokens` [N, C] through the kernel,
    or None where it does not apply (training, autograd, not float32 CPU, more than 8 rows, other modules)."""
    if torch.compiler.is_compiling():  # first: a traced graph must not guard on the sizes below
        return None
    if (tokens.dtype != torch.float32 or not tokens.is_cpu or not 0 < tokens.shape[0] <= kernel_linear.MAX_ROWS
            or torch.is_grad_enabled() or block.training or block.normalize_p is not None and block.normalize_p <= 0):
        return None
    if not _plain_linear(block.gate):
        return None
    experts = [_expert_weights(expert) for expert in block.experts]
    if any(weights is None for weights in experts):
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
    kernels = kernel_linear._module()
    if not kernels or any(not w.is_contiguous() for triple in experts for w in triple):
        return None
    gate, up, down = (list(column) for column in zip(*experts))
    out, logits = kernels.moe_block(tokens, block.gate.weight, gate, up, down, shared,
                                    None if shared_gate is None else shared_gate.weight, block.top_k,
                                    block.softmax_after_topk, block.norm_topk_prob, block.normalize_p or 0.0)
    return out, logits
