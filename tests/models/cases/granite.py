from dataclasses import replace

from ..family_checks import Case

# Granite-3.0-like multipliers (embedding 12, residual 0.22, attention 1/head_dim rather than 1/sqrt, logits / 8)
MULTIPLIERS = {"embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.0625,
               "logits_scaling": 8.0}

CASES = {
    "granite-gqa-multipliers": Case("granite", MULTIPLIERS, bf16_greedy=True),
    # MHA, attention and MLP biases, tied head, linear rope scaling, other multipliers
    "granite-mha-bias-tied-linear": Case("granite", {
        "num_key_value_heads": 4, "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True,
        "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "embedding_multiplier": 0.5,
        "residual_multiplier": 1.5, "attention_multiplier": 0.3, "logits_scaling": 0.7}),
    # one KV head, every multiplier at its default of 1
    "granite-mqa-defaults": Case("granite", {"num_key_value_heads": 1}),
}

# 4.45.2's numerics matched to the bit: bf16 and fp16 logits are checked for exact equality
CASES = {name: replace(case, half_exact=True) for name, case in CASES.items()}
