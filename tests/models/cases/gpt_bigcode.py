from ..family_checks import Case
from .gpt2 import GPT2_BASE

CASES = {
    "gpt_bigcode-mqa": Case("gpt_bigcode", {"initializer_range": 0.2}, base=GPT2_BASE, static_cache=False,
                                            bf16_greedy=True),
    "gpt_bigcode-mha-untied": Case("gpt_bigcode", {"multi_query": False, "tie_word_embeddings": False, "n_inner": 72},
                                   base=GPT2_BASE, static_cache=False),
}
