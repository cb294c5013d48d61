"""GPTBigCodeConfig: GPT-2's field names with multi-query attention; defaults of transformers 4.45."""
from __future__ import annotations

from ..gpt2.configuration_gpt2 import GPT2StyleConfig


class GPTBigCodeConfig(GPT2StyleConfig):
    model_type = "gpt_bigcode"

    activation_function: str = "gelu_pytorch_tanh"
    attention_softmax_in_fp32: bool = True
    scale_attention_softmax_in_fp32: bool = True
    multi_query: bool = True

    @property
    def num_key_value_heads(self) -> int:
        return 1 if self.multi_query else self.n_head
