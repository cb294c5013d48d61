"""GPT2Config: field names (n_embd, n_head, ...) and defaults of transformers 4.45."""
from __future__ import annotations

from ...configuration_utils import PretrainedConfig


class GPT2StyleConfig(PretrainedConfig):
    """The fields GPT-2 and its descendants (GPTBigCode) share, and the names the shared decoder reads."""

    attribute_map = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
                     "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # None: 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    use_cache: bool = True
    bos_token_id: int | list[int] | None = 50256
    eos_token_id: int | list[int] | None = 50256

    # --- the names the shared decoder reads ---------------------------------------------------------
    @property
    def num_key_value_heads(self) -> int:
        return self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def intermediate_size(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def attention_dropout(self) -> float:
        return self.attn_pdrop

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        return None

    def score_scale(self, layer_idx: int) -> float:
        return self.head_dim ** -0.5 if self.scale_attn_weights else 1.0


class GPT2Config(GPT2StyleConfig):
    model_type = "gpt2"

    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False  # fp32 scores: what formers' eager kernel computes in fp32 anyway

    def score_scale(self, layer_idx: int) -> float:
        """1/sqrt(head_dim) (or 1 without `scale_attn_weights`), divided by layer_idx + 1 when
        `scale_attn_by_inverse_layer_idx` (GPT-2's Mistral-style stabiliser)."""
        scale = super().score_scale(layer_idx)
        return scale / (layer_idx + 1) if self.scale_attn_by_inverse_layer_idx else scale
