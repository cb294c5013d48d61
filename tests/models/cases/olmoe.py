from dataclasses import replace

from ..family_checks import Case

# Experts 32 wide; full-width q/k RMSNorms (their weights perturbed by the builder) in every case
CASES = {
    # top-2 of 8, not renormalised (OLMoE's default)
    "olmoe-gqa-top2": Case("olmoe", {"num_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 32},
                           bf16_greedy=True),
    # top-4 of 6, renormalised; q/k (after their norms, ~1 in size) and v clamped to +-0.5
    "olmoe-mha-top4-norm-clip": Case("olmoe", {"num_experts": 6, "num_experts_per_tok": 4, "intermediate_size": 32,
                                               "num_key_value_heads": 4, "norm_topk_prob": True, "clip_qkv": 0.5}),
    # top-1 of 4, one KV head, attention biases, tied embeddings, linear rope scaling; weights drawn 10x wider than
    # 0.02 (at 0.02 the tied head echoes the last token: greedy and beams were one repeated token)
    "olmoe-mqa-top1-bias-tied": Case("olmoe", {"num_experts": 4, "num_experts_per_tok": 1, "intermediate_size": 32,
                                               "num_key_value_heads": 1, "attention_bias": True,
                                               "tie_word_embeddings": True, "initializer_range": 0.2,
                                               "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    # the released checkpoints' routing: top-8 of 64 (narrow experts keep it small)
    "olmoe-top8-of-64": Case("olmoe", {"num_experts": 64, "num_experts_per_tok": 8, "intermediate_size": 16}),
}

# 4.45.2's numerics matched to the bit (its expert loop adds each token's terms in ascending expert order, as
# the shared block does): bf16 and fp16 logits are checked for exact equality
CASES = {name: replace(case, half_exact=True) for name, case in CASES.items()}
