from ...conftest import TINY
from ..family_checks import Case

# initializer_range 0.1: attention scores of order 1, so the score scale, the window and small softcaps
# change the logits far beyond the 1e-5 tolerance. Every case has a window shorter than the 12-token
# prompts; 4.45.2 gets Gemma2 right only without a cache there (see Case.oracle_cache).
BASE = dict(TINY, initializer_range=0.1, head_dim=16, query_pre_attn_scalar=16)

CASES = {
    # GQA, 3 layers (local, global, local), the default softcaps (50, 30)
    "gemma2-gqa": Case("gemma2", {"num_hidden_layers": 3, "sliding_window": 4}, base=BASE, bf16_greedy=True,
                       static_cache="oracle_dynamic", oracle_cache=False),
    # MQA; query_pre_attn_scalar unlike head_dim (as 27B: 144 vs 128); softcaps that bite; untied (tied tiny
    # models soon repeat one token)
    "gemma2-mqa-scalar": Case("gemma2", {"num_key_value_heads": 1, "head_dim": 24, "query_pre_attn_scalar": 40,
                                         "num_hidden_layers": 4, "sliding_window": 6, "attn_logit_softcapping": 1.5,
                                         "final_logit_softcapping": 2.5, "tie_word_embeddings": False},
                              base=BASE, static_cache="oracle_dynamic", oracle_cache=False),
    # softcaps off; untied head and attention biases
    "gemma2-no-softcap": Case("gemma2", {"sliding_window": 5, "attn_logit_softcapping": None,
                                         "final_logit_softcapping": None, "tie_word_embeddings": False,
                                         "attention_bias": True},
                              base=BASE, bf16_greedy=True, static_cache="oracle_dynamic", oracle_cache=False),
}
