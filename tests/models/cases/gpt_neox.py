from ..family_checks import Case

NEOX_BASE = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=256, bos_token_id=1, eos_token_id=2)

CASES = {
    # Pythia's layout: parallel residual off two norms, a quarter of each 16-dim head rotating, biases, untied
    "gpt_neox-parallel": Case("gpt_neox", {"initializer_range": 0.2}, base=NEOX_BASE, bf16_greedy=True),
    "gpt_neox-sequential-unbiased-tied": Case("gpt_neox", {"initializer_range": 0.2,
                                                           "use_parallel_residual": False, "attention_bias": False,
                                                           "tie_word_embeddings": True, "rotary_pct": 0.5,
                                                           "rotary_emb_base": 500}, base=NEOX_BASE),
    # 6 heads of 8, all rotating, linear scaling under the legacy "type" key
    "gpt_neox-6-heads-full-rotary-linear": Case("gpt_neox", {"initializer_range": 0.2, "num_attention_heads": 6,
                                                             "hidden_size": 48,
                                                             "rotary_pct": 1.0,
                                                             "rope_scaling": {"type": "linear", "factor": 2.0}},
                                                base=NEOX_BASE),
    # dynamic NTK past a 16-position table (prompt 12 + 32 new tokens)
    "gpt_neox-dynamic": Case("gpt_neox", {"initializer_range": 0.2, "max_position_embeddings": 16, "rotary_pct": 0.5,
                                          "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, base=NEOX_BASE),
}
