from ..family_checks import Case

# Shared expert always on (4.45's Qwen2-MoE has no switch); top-k 4, 2 and 1, with and without
# norm_topk_prob; decoder_sparse_step 2 (only layer 1 of 3 sparse) and mlp_only_layers (layer 0 dense);
# GQA and MQA; a sliding window (from layer 1) longer than every sequence here, as 4.45.2's eager/SDPA
# paths ignore it (formers applies it, as for Qwen2). 4.45 refuses a static cache for Qwen2-MoE: formers' is
# compared with 4.45's default cache. The tied case's weights are drawn 10x wider than 0.02: at 0.02 a tied head
# echoes the last token forever (greedy and beams one repeated token).
MOE = {"moe_intermediate_size": 32, "shared_expert_intermediate_size": 80}

CASES = {
    "qwen2_moe-top4-gqa": Case("qwen2_moe", {**MOE, "num_experts": 6, "num_experts_per_tok": 4},
                               static_cache="oracle_dynamic", bf16_greedy=True, half_exact=True),
    "qwen2_moe-top2-norm-step2": Case("qwen2_moe", {**MOE, "num_experts": 4, "num_experts_per_tok": 2,
                                                    "norm_topk_prob": True, "decoder_sparse_step": 2,
                                                    "num_hidden_layers": 3, "use_sliding_window": True,
                                                    "sliding_window": 64, "max_window_layers": 1},
                                      static_cache="oracle_dynamic"),
    "qwen2_moe-top1-mlp-only-mqa-tied": Case("qwen2_moe", {**MOE, "num_experts": 5, "num_experts_per_tok": 1,
                                                           "mlp_only_layers": [0], "num_key_value_heads": 1,
                                                           "tie_word_embeddings": True, "initializer_range": 0.2},
                                             static_cache="oracle_dynamic"),
}
