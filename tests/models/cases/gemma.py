from ..family_checks import Case

CASES = {
    # head_dim independent of hidden/heads; MQA as Gemma-2B; untied variant; attention bias; hidden_activation
    "gemma-mqa": Case("gemma", {"initializer_range": 0.2, "head_dim": 24, "num_key_value_heads": 1}, bf16_greedy=True),
    "gemma-untied-bias": Case("gemma", {"tie_word_embeddings": False, "attention_bias": True,
                                        "hidden_activation": "gelu"}),
}
