from dataclasses import replace

from ..family_checks import Case
from .granite import MULTIPLIERS

EXPERTS = {"intermediate_size": 32}

CASES = {
    # Granite-3.0-like multipliers, top-2 of 8 (seed 1: seed 0's weights greedily emit EOS before 32 tokens)
    "granitemoe-gqa-top2-multipliers": Case("granitemoe", {**EXPERTS, **MULTIPLIERS, "num_local_experts": 8,
                                                           "num_experts_per_tok": 2}, seed=1, bf16_greedy=True),
    # top-4 of 6, MHA, attention biases, tied head, linear rope scaling, other multipliers; weights drawn 10x wider
    # than 0.02, as every tied tiny case (at 0.02 the layers barely move the residual and a tied head echoes the
    # last token: greedy and beams were one repeated token)
    "granitemoe-mha-top4-bias-tied": Case("granitemoe", {
        **EXPERTS, "num_local_experts": 6, "num_experts_per_tok": 4, "num_key_value_heads": 4,
        "attention_bias": True, "tie_word_embeddings": True, "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        "embedding_multiplier": 0.5, "residual_multiplier": 1.5, "attention_multiplier": 0.3, "logits_scaling": 0.7,
        "initializer_range": 0.2}),
    # top-1 of 4, one KV head, every multiplier at its default of 1
    "granitemoe-mqa-top1": Case("granitemoe", {**EXPERTS, "num_local_experts": 4, "num_experts_per_tok": 1,
                                               "num_key_value_heads": 1}),
}

# 4.45.2's numerics matched to the bit (its one index_add sums each token's k terms in float32 on CPU; the shared
# block's float32_sum does the same): bf16 and fp16 logits are checked for exact equality
CASES = {name: replace(case, half_exact=True) for name, case in CASES.items()}
