from ..family_checks import Case

# 4.45.2's eager/SDPA paths ignore `sliding_window` (only flash attention applies it): a window of 5 under
# 16-token prompts and 32 new tokens shows formers attends globally as they do (test_starcoder2.py checks that
# the window really is ignored there).
CASES = {
    "starcoder2-gqa-window-tied": Case("starcoder2", {"initializer_range": 0.2, "sliding_window": 5}, bf16_greedy=True),
    "starcoder2-mha-unbiased-untied-linear": Case("starcoder2", {
        "num_key_value_heads": 4, "use_bias": False, "tie_word_embeddings": False, "hidden_act": "gelu",
        "rope_scaling": {"type": "linear", "factor": 2.0}}),
    # one KV head; dynamic NTK rope past a 16-position table (prompt 12 + 32 new tokens)
    "starcoder2-mqa-dynamic": Case("starcoder2", {"initializer_range": 0.2, "num_key_value_heads": 1,
                                                  "max_position_embeddings": 16,
                                                  "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
}
