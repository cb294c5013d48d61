from ..family_checks import Case

CASES = {
    "llama-gqa-tied": Case("llama", {"tie_word_embeddings": True}),
    "llama-bias": Case("llama", {"attention_bias": True, "mlp_bias": True}, bf16_greedy=True),
    "mistral-window": Case("mistral", {"sliding_window": 5}),
    "qwen2": Case("qwen2", {}),
}
