from dataclasses import replace

from ..family_checks import Case

CASES = {
    # StableLM-2-1.6B-like: q/k/v biases, rotary on a quarter of each 16-wide head, sequential block, MHA
    "stablelm-qkv-bias": Case("stablelm", {"use_qkv_bias": True, "num_key_value_heads": 4}, bf16_greedy=True),
    # StableLM-2-12B-like: per-head q/k LayerNorms, parallel block, GQA, tied head, linear rope ("type" key)
    "stablelm-qknorm-parallel-gqa-tied": Case("stablelm", {"initializer_range": 0.2, 
        "qk_layernorm": True, "use_parallel_residual": True, "tie_word_embeddings": True,
        "rope_scaling": {"type": "linear", "factor": 2.0}}, bf16_greedy=True),
    # one KV head, q/k norms without the parallel block, half of each head rotating, 3 heads of 20
    "stablelm-mqa-qknorm-half-rotary": Case("stablelm", {
        "hidden_size": 60, "num_attention_heads": 3, "num_key_value_heads": 1, "qk_layernorm": True,
        "partial_rotary_factor": 0.5}),
}

# 4.45.2's numerics matched to the bit: bf16 and fp16 logits are checked for exact equality
CASES = {name: replace(case, half_exact=True) for name, case in CASES.items()}
