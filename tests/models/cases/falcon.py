from ..family_checks import Case

FALCON_BASE = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   bos_token_id=1, eos_token_id=2, max_position_embeddings=256)

CASES = {
    # Falcon-7B: one KV head, parallel block off one norm
    # (4.45.2's static cache crashes on one KV head: formers' static cache is checked against its dynamic cache)
    "falcon-7b-layout": Case("falcon", {}, base=FALCON_BASE, bf16_greedy=True, static_cache="oracle_dynamic"),
    # Falcon-40B: grouped KV heads, two norms, biases
    "falcon-40b-layout": Case("falcon", {"new_decoder_architecture": True, "num_kv_heads": 2, "bias": True,
                                         "num_attention_heads": 8}, base=FALCON_BASE, bf16_greedy=True),
    # Falcon2-11B: new architecture with one norm; untied; rope scaling
    "falcon2-11b-layout": Case("falcon", {"new_decoder_architecture": True, "num_kv_heads": 1,
                                          "num_ln_in_parallel_attn": 1, "tie_word_embeddings": False,
                                          "rope_scaling": {"rope_type": "linear", "factor": 2.0}},
                               base=FALCON_BASE),
    # Falcon-RW: ALiBi, sequential blocks, full multi-head, biases, 6 heads (non-power-of-two slopes).
    # 4.45.2's eager ALiBi path adds the bias twice (test_falcon.py shows it): the oracle runs SDPA, which adds
    # it once as trained; its static cache crashes with ALiBi, so formers' is checked against its dynamic cache.
    "falcon-rw-alibi": Case("falcon", {"initializer_range": 0.2, "alibi": True, "parallel_attn": False,
                                       "multi_query": False, "bias": True,
                                       "num_attention_heads": 6, "hidden_size": 48}, base=FALCON_BASE,
                            oracle_attention="sdpa", outputs_check=False, static_cache="oracle_dynamic"),
}
