"""DbrxConfig and its two nested configs, DbrxAttentionConfig and DbrxFFNConfig: field names, defaults and
json layout of transformers 4.45 (`attn_config`/`ffn_config` are saved as dicts holding the fields that
differ from their defaults, plus `"model_type": ""`)."""
from __future__ import annotations

from typing import Any, ClassVar

from ...configuration_utils import PretrainedConfig
from ...errors import ConfigError
from ..decoder_config import GlobalHeadsMixin


class _DbrxSection(PretrainedConfig):
    """A nested DBRX config: unknown keys are refused (as 4.45 does), and a whole DBRX config.json given to
    `from_dict`/`from_pretrained` yields its `section`."""

    section: ClassVar[str] = ""

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(self._fields) - {"model_type"})
        if unknown:
            raise ConfigError(f"{type(self).__name__} ('{self.section}' of a DBRX config): unknown fields {unknown}; "
                              f"expected some of {sorted(set(self._fields) - set(PretrainedConfig._fields))}")
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        if config_dict.get("model_type") == "dbrx":
            config_dict = config_dict.get(cls.section) or {}
        return super().from_dict(config_dict, **kwargs)

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that differ from this class's defaults, and `"model_type": ""` (4.45's nested diff)."""
        defaults = type(self)().to_dict()
        diff = {k: v for k, v in self.to_dict().items() if k not in defaults or v != defaults[k]}
        return {**diff, "model_type": self.model_type}


class DbrxAttentionConfig(_DbrxSection):
    section = "attn_config"

    attn_pdrop: float = 0.0
    clip_qkv: float | None = None  # clamp the fused q/k/v projection to [-clip_qkv, clip_qkv]
    kv_n_heads: int = 1
    rope_theta: float = 10000.0


class DbrxFFNConfig(_DbrxSection):
    section = "ffn_config"

    ffn_act_fn: dict[str, Any] | None = None  # {"name": activation}; None means {"name": "silu"}
    ffn_hidden_size: int = 3584  # each expert's width
    moe_num_experts: int = 4
    moe_top_k: int = 1
    moe_jitter_eps: float | None = None  # training-time input jitter of the router
    moe_loss_weight: float = 0.01  # the aux loss coefficient
    moe_normalize_expert_weights: float | None = 1.0  # top-k weights divided by their p-norm (None: not at all)

    def __post_init__(self) -> None:
        if self.ffn_act_fn is None:
            self.ffn_act_fn = {"name": "silu"}


class DbrxConfig(GlobalHeadsMixin, PretrainedConfig):
    model_type = "dbrx"
    attribute_map = {"num_attention_heads": "n_heads", "hidden_size": "d_model", "num_hidden_layers": "n_layers",
                     "max_position_embeddings": "max_seq_len"}

    d_model: int = 2048
    n_heads: int = 16
    n_layers: int = 24
    max_seq_len: int = 2048
    vocab_size: int = 32000
    resid_pdrop: float = 0.0
    emb_pdrop: float = 0.0
    attn_config: DbrxAttentionConfig | dict | None = None  # None: the defaults; a dict: its fields
    ffn_config: DbrxFFNConfig | dict | None = None
    use_cache: bool = True
    initializer_range: float = 0.02
    output_router_logits: bool = False
    num_key_value_heads: int | None = None  # None: attn_config.kv_n_heads
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for name, section in (("attn_config", DbrxAttentionConfig), ("ffn_config", DbrxFFNConfig)):
            value = vars(self)[name]
            if not isinstance(value, section):
                try:
                    object.__setattr__(self, name, section(**(value or {})))
                except ConfigError as exc:
                    raise ConfigError(f"DbrxConfig field {name!r}: {exc}") from None
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.attn_config.kv_n_heads
        if self.tie_word_embeddings:
            raise ConfigError("DbrxConfig field 'tie_word_embeddings': DBRX models do not tie embeddings; expected False")

    # --- what the shared decoder reads ---------------------------------------------------------
    @property
    def rope_theta(self) -> float:
        return self.attn_config.rope_theta

    @property
    def attention_dropout(self) -> float:
        return self.attn_config.attn_pdrop

    @property
    def intermediate_size(self) -> int:
        return self.ffn_config.ffn_hidden_size

    @property
    def hidden_act(self) -> str:
        return self.ffn_config.ffn_act_fn.get("name", "silu")

    @property
    def router_aux_loss_coef(self) -> float:
        return self.ffn_config.moe_loss_weight

    # --- serialisation: the nested configs as dicts ----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["attn_config"], out["ffn_config"] = self.attn_config.to_dict(), self.ffn_config.to_dict()
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        out = super().to_diff_dict()
        out["attn_config"], out["ffn_config"] = self.attn_config.to_diff_dict(), self.ffn_config.to_diff_dict()
        return out
