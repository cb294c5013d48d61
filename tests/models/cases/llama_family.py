from ..family_checks import Case

LONGROPE = {"rope_type": "longrope", "short_factor": [1.0 + i / 10 for i in range(8)],
            "long_factor": [2.0 + i / 5 for i in range(8)]}

CASES = {
    "llama-untied": Case("llama", {}),
    "llama-gqa-tied": Case("llama", {"initializer_range": 0.2, "tie_word_embeddings": True}),
    "llama-bias": Case("llama", {"attention_bias": True, "mlp_bias": True}, bf16_greedy=True),
    "llama-head_dim": Case("llama", {"head_dim": 24}),
    "llama-mha": Case("llama", {"num_key_value_heads": 4}),
    "rope-linear": Case("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "rope-dynamic": Case("llama", {"max_position_embeddings": 12, "rope_scaling": {"rope_type": "dynamic",
                                                                                  "factor": 2.0}}),
    "rope-yarn": Case("llama", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "beta_fast": 16.0}}),
    "rope-longrope": Case("llama", {"original_max_position_embeddings": 64, "rope_scaling": LONGROPE}),
    "rope-llama3": Case("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}),
    "rope-type-key": Case("llama", {"rope_scaling": {"type": "linear", "factor": 3.0}}),
    "mistral-window": Case("mistral", {"sliding_window": 5}),
    "qwen2": Case("qwen2", {"initializer_range": 0.2}),
}
