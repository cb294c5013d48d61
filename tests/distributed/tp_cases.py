"""What every tensor-parallel test computes, in the worker ranks and in the single-process reference alike:
a padded batch's logits and greedy, beam and seeded-sampling tokens (plus a static cache where asked)."""
from __future__ import annotations

import torch

from ..conftest import TINY

GEMMA2 = dict(TINY, initializer_range=0.1, head_dim=16, query_pre_attn_scalar=16)
MOE = {"moe_intermediate_size": 32, "shared_expert_intermediate_size": 80}
# name -> (model_type, build_oracle_checkpoint overrides, base, static cache checked)
CASES = {
    "llama-gqa": ("llama", {}, None, True),
    # one KV head for two ranks (replicated), a tied head, a vocabulary that does not split evenly, biases on
    # the row-parallel o_proj and down_proj (added once: by rank 0)
    "llama-mqa-tied-odd-vocab-biases": ("llama", {"num_key_value_heads": 1, "tie_word_embeddings": True,
                                                  "vocab_size": 131, "attention_bias": True, "mlp_bias": True},
                                        None, True),
    "qwen2-biases": ("qwen2", {}, None, True),
    "gemma2": ("gemma2", {"num_hidden_layers": 3, "sliding_window": 4}, GEMMA2, False),  # HybridCache default
    "mixtral": ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2}, None, False),
    "qwen2_moe-shared-expert": ("qwen2_moe", {**MOE, "num_experts": 4, "num_experts_per_tok": 2}, None, False),
}
# two rows, the second left-padded: masks and position handling are exercised
IDS = torch.tensor([[5, 17, 33, 9, 60, 21, 44], [0, 0, 12, 80, 7, 51, 3]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])


def run_cases(model, static: bool = False) -> dict[str, torch.Tensor]:
    shared = dict(attention_mask=MASK, pad_token_id=0, max_new_tokens=8)
    out = {}
    with torch.no_grad():
        out["logits"] = model(input_ids=IDS, attention_mask=MASK, use_cache=False).logits
        out["cached_logits"] = model(input_ids=IDS, attention_mask=MASK).logits  # the family's default cache
        # every head's weights (each rank computes its own heads; the attention hook gathers them)
        out["attentions"] = torch.stack(model(input_ids=IDS, attention_mask=MASK, use_cache=False,
                                              output_attentions=True).attentions)
    out["greedy"] = model.generate(IDS, do_sample=False, **shared)
    out["beam"] = model.generate(IDS, do_sample=False, num_beams=3, num_return_sequences=2, **shared)
    torch.manual_seed(7)
    out["sample"] = model.generate(IDS, do_sample=True, top_k=0, temperature=1.3, **shared)
    if static:
        out["static"] = model.generate(IDS, do_sample=False, cache_implementation="static", **shared)
    return out
