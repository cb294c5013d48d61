from dataclasses import replace

from ..family_checks import Case

# 4.45.2's Nemotron forward reads no tuple cache, returns none unless given a Cache object, and counts cache
# positions from 0 when not given them: the oracle recomputes each step without a cache (oracle_cache=False).
# Its generate() does pass a cache and positions: test_nemotron.py compares bf16 greedy tokens with that.
CASES = {
    # squared-ReLU MLP, LayerNorm1P, rotary on half of each 16-wide head, GQA, untied
    "nemotron-gqa-half-rotary": Case("nemotron", {}, oracle_cache=False),
    # explicit head_dim (24, not hidden/heads), a quarter rotating, MHA, attention and MLP biases, tied
    "nemotron-mha-bias-headdim-tied": Case("nemotron", {
        "num_key_value_heads": 4, "head_dim": 24, "partial_rotary_factor": 0.25, "attention_bias": True,
        "mlp_bias": True, "tie_word_embeddings": True}, oracle_cache=False),
    # one KV head, the whole head rotating, odd head count (3 heads of 20)
    "nemotron-mqa-full-rotary": Case("nemotron", {
        "hidden_size": 60, "num_attention_heads": 3, "num_key_value_heads": 1, "partial_rotary_factor": 1.0},
        oracle_cache=False),
}

# 4.45.2's numerics matched to the bit: bf16 and fp16 logits are checked for exact equality
CASES = {name: replace(case, half_exact=True) for name, case in CASES.items()}
