from ..family_checks import Case

# head_dim 16 (64 / 4 heads) unless said otherwise; partial rotary over 8, 12 or 16 of its dimensions
CASES = {
    "phi-gqa-partial-half": Case("phi", {"initializer_range": 0.2}),
                                          # 4.45's defaults: partial_rotary_factor 0.5, untied, GELU (new)
    # 4.45 runs qk_layernorm only with one head (its LayerNorm, sized head_dim, sees the flat projection)
    "phi-qk-layernorm-one-head": Case("phi", {"initializer_range": 0.2, "num_attention_heads": 1,
                                              "num_key_value_heads": 1,
                                              "qk_layernorm": True, "partial_rotary_factor": 0.25}),
    "phi-mha-tied-full-rotary-dynamic": Case("phi", {"initializer_range": 0.2, 
        "num_key_value_heads": 4, "tie_word_embeddings": True, "partial_rotary_factor": 1.0,
        "max_position_embeddings": 16, "rope_scaling": {"type": "dynamic", "factor": 2.0}}),
    "phi-mqa-linear-three-quarters": Case("phi", {"initializer_range": 0.2, 
        "num_key_value_heads": 1, "partial_rotary_factor": 0.75, "hidden_act": "gelu",
        "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
}
