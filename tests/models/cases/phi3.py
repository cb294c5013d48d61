from ..family_checks import Case

# head_dim 16: longrope factor lists hold 8 numbers. "phi3-gqa-longrope": original_max_position_embeddings 30 lies
# past the 16-token logits checks and the 28 positions of beam search (4.45.2's Phi3 beam search crashes once its
# refilled cache comes back as tuples: test_phi3.py covers that crossing) but inside greedy (44) and sampling (36),
# which cross it and refill the cache. "phi3-mqa-su-tied": 8, shorter than every prompt, so all runs use the long
# factors. 4.45 refuses a static cache for Phi3: formers' (refilled by reset() at the crossing too) is compared with
# 4.45's default cache. Its eager/SDPA paths ignore `sliding_window` (test_phi3.py shows it).
SHORT = [1.0 + i / 8 for i in range(8)]
LONG = [2.0 + i for i in range(8)]
LONGROPE = {"type": "longrope", "short_factor": SHORT, "long_factor": LONG}
BASE = {"pad_token_id": 0, "max_position_embeddings": 64}

CASES = {
    "phi3-gqa-longrope": Case("phi3", {**BASE, "original_max_position_embeddings": 30, "rope_scaling": LONGROPE},
                              static_cache="oracle_dynamic", bf16_greedy=True),
    # "su", an older name of longrope; one KV head; embeddings tied
    "phi3-mqa-su-tied": Case("phi3", {**BASE, "original_max_position_embeddings": 8, "num_key_value_heads": 1,
                                      "tie_word_embeddings": True, "rope_scaling": {**LONGROPE, "type": "su"}},
                             static_cache="oracle_dynamic"),
    # no rope scaling; all heads kept; a window of 5 that 4.45 ignores outside flash attention
    "phi3-mha-window": Case("phi3", {**BASE, "num_key_value_heads": 4, "sliding_window": 5},
                                     static_cache="oracle_dynamic",
                            bf16_greedy=True),
}
