from ..family_checks import Case

# 4 to 8 experts, top-k 1, 2 and 4; GQA, MHA and MQA. 4.45 refuses a static cache for Mixtral: formers' is
# compared with 4.45's default cache. A sliding_window shorter than the prompts, which 4.45.2's eager and
# SDPA paths ignore (formers too; see MixtralConfig.layer_sliding_window). The tied case's weights are drawn 10x
# wider than 0.02: at 0.02 the layers barely move the residual and a tied head echoes the last token forever.
CASES = {
    "mixtral-top2-gqa": Case("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2},
                             static_cache="oracle_dynamic", bf16_greedy=True, half_exact=True),
    "mixtral-top1-mha-tied": Case("mixtral", {"num_local_experts": 3, "num_experts_per_tok": 1,
                                              "num_key_value_heads": 4, "tie_word_embeddings": True,
                                              "initializer_range": 0.2},
                                  static_cache="oracle_dynamic"),
    "mixtral-top4-mqa-window": Case("mixtral", {"num_local_experts": 8, "num_experts_per_tok": 4,
                                                "num_key_value_heads": 1, "sliding_window": 5},
                                    static_cache="oracle_dynamic"),
}
