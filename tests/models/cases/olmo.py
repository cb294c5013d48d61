from ..family_checks import Case

CASES = {
    # q/k/v clamped to +-0.1 (the tiny model's projections reach ~0.5: test_olmo.py checks the clamp bites)
    "olmo-mha-clip-qkv": Case("olmo", {"num_key_value_heads": 4, "clip_qkv": 0.1}, bf16_greedy=True),
    "olmo-gqa-bias-tied": Case("olmo", {"initializer_range": 0.2, "attention_bias": True,
                                        "tie_word_embeddings": True}, bf16_greedy=True),
    # OLMo's own rope scaling: positions divided by the factor; dynamic NTK past a 16-position table
    "olmo-linear": Case("olmo", {"rope_scaling": {"type": "linear", "factor": 2.0}, "num_key_value_heads": 1}),
    "olmo-dynamic": Case("olmo", {"rope_scaling": {"type": "dynamic", "factor": 2.0},
                                  "max_position_embeddings": 16, "clip_qkv": 0.3}),
}
