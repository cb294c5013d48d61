"""The sparse mixture-of-experts feed-forward block every MoE family shares, and its auxiliary loss.

A router scores each token against every expert; each token goes through its `top_k` best experts and
the outputs are summed with the routing weights. The families differ only in how the weights are formed
(constructor arguments below, not subclasses):
  Mixtral, OLMoE(norm), Qwen2-MoE(norm)  softmax over all experts (float32) -> top-k -> optional renorm
  DBRX                                   ... -> divide by the p-norm of the top-k weights
  GraniteMoE                             top-k of the logits -> softmax over those k
Qwen2-MoE adds a shared expert that every token goes through, scaled by sigmoid(shared_expert_gate(x)).

Expert compute groups tokens by expert: the N*k (token, expert) assignments are sorted by expert, each
expert that received tokens runs ONE matmul chain on its contiguous slice, and each token's k weighted
outputs are summed in ascending expert order (4.45's order, so half precision matches it to the bit).
Experts no token chose are never touched, so a batch-1 decode step reads only k experts' weights
(transformers 4.45 loops over every expert). Decoding 1 to 8 float32 rows on CPU without autograd, the block
(and, where its attention is plain Llama, the whole decoder layer) is one C++ call instead (kernels/moe.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..kernels.decode import pack_for_decoding
from ..kernels.linear import float_logits
from ..kernels.moe import moe_block
from ..modeling_outputs import MoeCausalLMOutputWithPast, MoeModelOutputWithPast
from .decoder import DecoderForCausalLM, DecoderModel, causal_lm_loss
from .layers import Linear
from .mlp import GatedMLP


class SparseMoeBlock(nn.Module):
    """hidden [B, T, C] -> (output [B, T, C], router logits [B*T, E]).

    Modules (the checkpoint-facing names): `gate` (router, C -> E), `experts` (ModuleList of E expert
    MLPs; GatedMLP(C, expert_intermediate_size) unless `expert_factory()` builds another shape), and with
    `shared_expert_intermediate_size` a `shared_expert` GatedMLP plus, if `shared_expert_gated`, its
    `shared_expert_gate` (C -> 1).
    Routing: `norm_topk_prob` renormalises the top-k weights to sum 1; `normalize_p` (DBRX) divides them
    by their p-norm instead; `softmax_after_topk` (GraniteMoE) takes the top-k logits, then a softmax.
    `jitter_noise` scales the input by U(1-eps, 1+eps) in training (Mixtral's router_jitter_noise).
    `float32_sum` adds each token's k terms in float32 and rounds once (GraniteMoE: 4.45 adds them in one
    index_add, which accumulates half-precision rows in float32 on CPU); otherwise rounding after each add.
    """

    def __init__(self, hidden_size: int, expert_intermediate_size: int, num_experts: int, top_k: int, *,
                 hidden_act: str = "silu", norm_topk_prob: bool, normalize_p: float | None = None,
                 softmax_after_topk: bool = False, router_bias: bool = False,
                 expert_factory: Callable[[], nn.Module] | None = None,
                 shared_expert_intermediate_size: int | None = None, shared_expert_gated: bool = False,
                 jitter_noise: float = 0.0, float32_sum: bool = False):
        super().__init__()
        if not 0 < top_k <= num_experts:
            raise ConfigError(f"SparseMoeBlock: top_k (num_experts_per_tok) must be in [1, num_experts="
                              f"{num_experts}], got {top_k}")
        self.num_experts, self.top_k = num_experts, top_k
        self.norm_topk_prob, self.normalize_p = norm_topk_prob, normalize_p
        self.softmax_after_topk, self.jitter_noise = softmax_after_topk, jitter_noise
        self.float32_sum = float32_sum
        self.gate = Linear(hidden_size, num_experts, bias=router_bias)
        make_expert = expert_factory or (lambda: GatedMLP(hidden_size, expert_intermediate_size, hidden_act))
        self.experts = nn.ModuleList(make_expert() for _ in range(num_experts))
        self.shared_expert = None if shared_expert_intermediate_size is None else \
            GatedMLP(hidden_size, shared_expert_intermediate_size, hidden_act)
        self.shared_expert_gate = Linear(hidden_size, 1, bias=False) if shared_expert_gated else None

    def route(self, router_logits: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """router logits [N, E] -> (weights [N, k] in `dtype`, expert ids [N, k]); scores in float32."""
        if self.softmax_after_topk:
            top_logits, experts = router_logits.float().topk(self.top_k, dim=-1)
            return top_logits.softmax(dim=-1).to(dtype), experts
        weights, experts = F.softmax(router_logits, dim=-1, dtype=torch.float32).topk(self.top_k, dim=-1)
        if self.normalize_p is not None:
            weights = weights / torch.norm(weights, p=self.normalize_p, dim=-1, keepdim=True)
        elif self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(dtype), experts

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = hidden.shape
        if self.training and self.jitter_noise > 0:
            hidden = hidden * torch.empty_like(hidden).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
        tokens = hidden.reshape(-1, shape[-1])  # [N, C]
        fused = moe_block(self, tokens)  # decoding: router, routing and experts in one call (kernels/moe.py)
        if fused is not None:
            return fused[0].reshape(shape), fused[1]
        router_logits = self.gate(tokens)  # [N, E]
        weights, experts = self.route(router_logits, tokens.dtype)
        out = self.experts_forward(tokens, weights, experts)
        if self.shared_expert is not None:
            shared = self.shared_expert(tokens)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(tokens)) * shared
            out = out + shared
        return out.reshape(shape), router_logits

    def experts_forward(self, tokens: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """tokens [N, C], weights/experts [N, k] -> sum_j weights[:, j] * expert_j(tokens) [N, C].

        The N*k assignments are sorted by expert; each chosen expert runs once on its slice. The per-expert
        counts are read on the host once per layer (to slice and to skip idle experts): free on CPU, one
        stall per layer on a GPU (4.45's loop stalls once per expert); the block's only host read.
        Each token's k terms are then added one by one in ascending expert order, rounding after each add
        as 4.45's per-expert index_add does (so half precision matches it to the bit; no atomics either).
        """
        if tokens.shape[0] == 1:
            return self._one_token(tokens, weights, experts)
        experts, rank = experts.sort(dim=-1)  # [N, k]: each token's experts ascending
        weights = weights.gather(1, rank)
        order = torch.argsort(experts.reshape(-1), stable=True)  # [N*k] assignment slots grouped by expert
        counts = torch.bincount(experts.reshape(-1), minlength=self.num_experts).tolist()  # host read
        grouped = tokens.index_select(0, order // self.top_k)  # [N*k, C] the token of each sorted slot
        outputs, start = [], 0
        for expert_idx, count in enumerate(counts):
            if count:
                outputs.append(self.experts[expert_idx](grouped[start:start + count]))
                start += count
        if not outputs:  # no tokens
            return torch.zeros_like(tokens)
        expert_out = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
        expert_out = (expert_out * weights.reshape(-1, 1)[order]).to(tokens.dtype)
        per_slot = torch.empty_like(expert_out).index_copy_(0, order, expert_out).view(-1, self.top_k, tokens.shape[-1])
        out = per_slot[:, 0].float() if self.float32_sum else per_slot[:, 0]
        for slot in range(1, self.top_k):
            out = out + per_slot[:, slot]
        return out.to(tokens.dtype)

    def _one_token(self, token: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """experts_forward for one token (decoding at batch 1): its k experts run in ascending order on the
        one row and their weighted outputs are added as they come, with no sorting or regrouping."""
        chosen = experts[0].tolist()  # host read: k ints
        weights = weights.view(-1, 1)  # [k, 1]
        out = None
        for slot in sorted(range(self.top_k), key=chosen.__getitem__):
            term = (self.experts[chosen[slot]](token) * weights[slot]).to(token.dtype)
            if out is None:
                out = term.float() if self.float32_sum else term
            else:
                out = out + term
        return out.to(token.dtype)


def load_balancing_loss_func(gate_logits: tuple[torch.Tensor, ...] | None, num_experts: int, top_k: int = 2,
                             attention_mask: torch.Tensor | None = None) -> torch.Tensor | int:
    """Switch Transformer's load-balancing loss (eqs. 4-6) over every MoE layer's router logits [B*T, E],
    as transformers 4.45 computes it: E * sum_e (share of top-k slots given to e) * (mean router prob of e),
    the shares kept per top-k slot. `attention_mask` [B, S] leaves padding out (its last T columns are
    used when it is longer than the routed tokens, as in a cached step). Returns 0 without logits."""
    if not isinstance(gate_logits, tuple) or not gate_logits:
        return 0
    device = gate_logits[0].device
    logits = torch.cat([layer.to(device) for layer in gate_logits], dim=0)  # [L*N, E]
    probs = torch.softmax(logits, dim=-1)
    chosen = F.one_hot(probs.topk(top_k, dim=-1).indices, num_experts).to(probs.dtype)  # [L*N, k, E]
    if attention_mask is None:
        slot_share, prob_share = chosen.mean(dim=0), probs.mean(dim=0)  # [k, E], [E]
    else:
        rows = attention_mask.shape[0]
        tokens = logits.shape[0] // (len(gate_logits) * rows)
        keep = attention_mask[:, -tokens:].to(device, probs.dtype).reshape(1, -1).expand(len(gate_logits), -1)
        keep = keep.reshape(-1)  # [L*N]
        total = keep.sum()
        slot_share = (chosen * keep[:, None, None]).sum(dim=0) / total
        prob_share = (probs * keep[:, None]).sum(dim=0) / total
    return torch.sum(slot_share * prob_share.unsqueeze(0)) * num_experts


class MoeDecoderModel(DecoderModel):
    """A DecoderModel whose `make_mlp` returns SparseMoeBlocks on some layers: `output_router_logits`
    (default: the config's) returns every MoE layer's router logits, as `MoeModelOutputWithPast`."""

    output_class: ClassVar[type] = MoeModelOutputWithPast

    def forward(self, *args, output_router_logits: bool | None = None, **kwargs):
        if output_router_logits is None:
            output_router_logits = self.config.output_router_logits
        return super().forward(*args, output_router_logits=output_router_logits, **kwargs)


class MoeDecoderForCausalLM(DecoderForCausalLM):
    """LM head over a MoeDecoderModel. With router logits on and labels given, the loss adds
    `config.router_aux_loss_coef` * the load-balancing loss (reported alone as `aux_loss`), as 4.45 does."""

    base_model_class: type[MoeDecoderModel] = MoeDecoderModel

    @classmethod
    def router_shape(cls, config) -> tuple[int, int]:
        """(number of experts, experts per token) as the family's config names them."""
        return config.num_experts, config.num_experts_per_tok

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                output_router_logits=None, return_dict=None, cache_position=None, num_logits_to_keep: int = 0,
                **kwargs):
        config = self.config
        return_dict = config.return_dict if return_dict is None else return_dict
        if output_router_logits is None:
            output_router_logits = config.output_router_logits
        pack_for_decoding(self)  # once: the weights into huge pages for the CPU decode kernels (kernels/decode.py)
        base = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                          output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                          output_router_logits=output_router_logits, return_dict=True, cache_position=cache_position)
        logits = float_logits(self.final_logits(self.lm_head(base.last_hidden_state[:, -num_logits_to_keep:, :])))
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        aux_loss = None
        if output_router_logits:
            aux_loss = load_balancing_loss_func(base.router_logits, *self.router_shape(config), attention_mask)
            if loss is not None:
                loss = loss + config.router_aux_loss_coef * torch.as_tensor(aux_loss, device=loss.device)
        out = MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux_loss, logits=logits,
                                        past_key_values=base.past_key_values, hidden_states=base.hidden_states,
                                        attentions=base.attentions, router_logits=base.router_logits)
        return out if return_dict else out.to_tuple()
