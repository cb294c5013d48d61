from dataclasses import replace

from ..family_checks import Case

CASES = {
    # parallel block off one norm, interleaved rotary, GQA, tied, logit_scale 0.0625 (the default)
    "cohere-gqa-tied": Case("cohere", {"initializer_range": 0.2}, bf16_greedy=True),
    # per-head q/k LayerNorms (weights [4, 16] and [2, 16]), attention biases, untied, another logit scale
    "cohere-qknorm-bias-untied": Case("cohere", {"use_qk_norm": True, "attention_bias": True,
                                                 "tie_word_embeddings": False, "logit_scale": 0.3}),
    # MHA with q/k norms (3 heads of 20), dynamic NTK rope past a 16-position table, logit_scale 1.7
    "cohere-mha-qknorm-dynamic": Case("cohere", {"initializer_range": 0.2, 
        "hidden_size": 60, "num_attention_heads": 3, "num_key_value_heads": 3, "use_qk_norm": True,
        "logit_scale": 1.7, "max_position_embeddings": 16, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
}

# 4.45.2's numerics matched to the bit: bf16 and fp16 logits are checked for exact equality
CASES = {name: replace(case, half_exact=True) for name, case in CASES.items()}
