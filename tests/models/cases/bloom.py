from ..family_checks import Case

# 4.45.2's Bloom has no SDPA path (eager only): formers' SDPA kernel is checked against its eager path.
BLOOM_BASE = dict(vocab_size=128, hidden_size=64, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2)

CASES = {
    "bloom": Case("bloom", {}, base=BLOOM_BASE, oracle_attention="eager", bf16_greedy=True),
    "bloom-6-heads-post-ln-residual": Case("bloom", {"n_head": 6, "hidden_size": 48,
                                                     "apply_residual_connection_post_layernorm": True,
                                                     "tie_word_embeddings": False},
                                           base=BLOOM_BASE, oracle_attention="eager"),
}
