"""GPTJConfig: field names (n_embd, n_head, ...) and defaults of transformers 4.45."""
from __future__ import annotations

from typing import ClassVar

from ..gpt2.configuration_gpt2 import GPT2StyleConfig


class GPTJConfig(GPT2StyleConfig):
    """GPT-2's field names and the names the shared decoder reads (GPT2StyleConfig), GPT-J's defaults."""

    model_type = "gptj"

    vocab_size: int = 50400
    n_positions: int = 2048
    n_embd: int = 4096
    n_layer: int = 28
    n_head: int = 16
    rotary_dim: int | None = 64  # leading dims of each head that rotate; None: n_embd (one head only)
    resid_pdrop: float = 0.0  # training only, as embd_pdrop
    embd_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    tie_word_embeddings: bool = False
    scale_attn_weights: ClassVar[bool] = True  # 4.45's GPTJConfig has no such field (it always scales)
