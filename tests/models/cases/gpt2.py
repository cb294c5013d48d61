from ..family_checks import Case

GPT2_BASE = dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2)

# 4.45.2's GPT-2 SDPA path drops `scale_attn_weights=False` and `scale_attn_by_inverse_layer_idx` (its eager path
# honours them): formers honours them in both kernels, so those cases are checked against 4.45.2's eager path.
CASES = {
    "gpt2": Case("gpt2", {}, base=GPT2_BASE, static_cache=False, bf16_greedy=True),
    "gpt2-inverse-layer-scale": Case("gpt2", {"scale_attn_by_inverse_layer_idx": True, "n_inner": 80,
                                              "activation_function": "gelu", "reorder_and_upcast_attn": True},
                                     base=GPT2_BASE, static_cache=False, oracle_attention="eager"),
    "gpt2-unscaled-untied": Case("gpt2", {"scale_attn_weights": False, "tie_word_embeddings": False, "n_head": 2},
                                 base=GPT2_BASE, static_cache=False, oracle_attention="eager"),
}
