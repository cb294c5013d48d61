from ..family_checks import Case

# 4.45.2's GPT-J has no SDPA path (it refuses attn_implementation="sdpa"): formers' SDPA kernel is checked
# against its eager path, which is also both libraries' default.
GPTJ_BASE = dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=128, rotary_dim=8,
                 bos_token_id=1, eos_token_id=2)

CASES = {
    # GPT-J-6B's shape in small: half of each 16-dim head rotates, untied biased head
    "gptj": Case("gptj", {"initializer_range": 0.2}, base=GPTJ_BASE, oracle_attention="eager", bf16_greedy=True),
    # 6 heads of 8 (sqrt(8) is not a power of two), every dim rotating, tied head, narrower GELU MLP
    "gptj-6-heads-full-rotary-tied": Case("gptj", {"initializer_range": 0.2, "n_head": 6, "n_embd": 48,
                                                   "rotary_dim": 8, "n_inner": 80,
                                                   "activation_function": "gelu", "tie_word_embeddings": True},
                                          base=GPTJ_BASE, oracle_attention="eager", bf16_greedy=True),
    # rotary_dim=None: all n_embd dims rotate, which 4.45 can only run with one head
    "gptj-one-head-rotary-none": Case("gptj", {"n_head": 1, "rotary_dim": None, "n_embd": 32},
                                      base=GPTJ_BASE, oracle_attention="eager"),
}
