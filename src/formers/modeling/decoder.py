"""The pre-norm decoder-only transformer shared by Llama, Mistral, Qwen2 and kin.

A family subclasses `DecoderModel` / `DecoderForCausalLM` and states only what differs through
`layer_spec` (biases, head sizes, sliding windows) and its config class.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..cache import Cache, DynamicCache
from ..errors import GenerationError
from ..modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from ..modeling_utils import PreTrainedModel
from .attention import Attention
from .masks import build_attention_mask
from .layers import Embedding, Linear
from .mlp import GatedMLP
from .norms import RMSNorm
from .rope import RotaryEmbedding


@dataclass(frozen=True)
class LayerSpec:
    """What one decoder layer looks like; families derive it from their config."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None


class DecoderLayer(nn.Module):
    def __init__(self, config, spec: LayerSpec, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(
            config.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim, layer_idx,
            qkv_bias=spec.qkv_bias, o_bias=spec.o_bias, dropout=config.attention_dropout,
            sliding_window=spec.sliding_window, implementation=config._attn_implementation or "sdpa",
        )
        self.mlp = GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act, bias=spec.mlp_bias)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden, cos, sin, mask, cache, cache_position, output_attentions=False):
        attn_out, weights = self.self_attn(self.input_layernorm(hidden), cos, sin, mask, cache, cache_position,
                                           output_attentions)
        hidden = hidden + attn_out
        hidden = hidden + self.mlp(self.post_attention_layernorm(hidden))
        return hidden, weights


class DecoderModel(PreTrainedModel):
    """input ids [B, T] -> hidden states [B, T, C] (the family's `XModel`)."""

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(
            DecoderLayer(config, self.layer_spec(config, idx), idx) for idx in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config, device=torch.device("cpu"))

    @staticmethod
    def layer_spec(config, layer_idx: int) -> LayerSpec:
        """Family hook: the shape and options of layer `layer_idx`."""
        return LayerSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def _attention_masks(self, attention_mask, cache_position, cache: Cache | None, length: int, dtype,
                         output_attentions: bool) -> list:
        """The mask of every layer, built once per (sliding window, cache layout) pair; the cache says how
        its key slots map to positions. `length` is the query length with a cache, the key length without."""
        implicit = self.config._attn_implementation != "eager" and not output_attentions
        built, masks = {}, []
        for idx, layer in enumerate(self.layers):
            window = layer.self_attn.sliding_window
            group = (window, cache.layer_kind(idx) if cache is not None else None)
            if group not in built:
                if cache is None:
                    key_length, key_positions = length, None
                else:
                    key_length = cache.attention_key_length(length, idx)
                    key_positions = cache.key_positions(cache_position, idx)
                built[group] = build_attention_mask(attention_mask, cache_position, key_length, dtype, window,
                                                    allow_implicit_causal=implicit, key_positions=key_positions)
            masks.append(built[group])
        return masks

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None, **kwargs):
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        use_cache = (config.use_cache and not self.training) if use_cache is None else use_cache
        return_dict = config.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise GenerationError("forward: pass exactly one of `input_ids` or `inputs_embeds`")
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds

        return_legacy_cache = use_cache and not isinstance(past_key_values, Cache)
        if return_legacy_cache:  # None or legacy tuples, as transformers accepts
            past_key_values = DynamicCache.from_legacy_cache(past_key_values)
        cache = past_key_values if use_cache else None
        query_length = hidden.shape[1]
        if cache_position is None or cache is None:  # a static cache's length is a device read: only here
            past_length = past_key_values.get_seq_length() if isinstance(past_key_values, Cache) else 0
        if cache_position is None:
            cache_position = torch.arange(past_length, past_length + query_length, device=hidden.device)
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)
        masks = self._attention_masks(attention_mask, cache_position, cache,
                                      query_length if cache is not None else past_length + query_length,
                                      hidden.dtype, output_attentions)
        cos, sin = self.rotary_emb(hidden, position_ids)
        all_hidden, all_attentions = [], []
        for layer, mask in zip(self.layers, masks):
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden, weights = layer(hidden, cos, sin, mask, cache, cache_position, output_attentions)
            if output_attentions:
                all_attentions.append(weights)
        hidden = self.norm(hidden)
        if output_hidden_states:
            all_hidden.append(hidden)

        next_cache = None
        if use_cache:
            next_cache = past_key_values.to_legacy_cache() if return_legacy_cache else past_key_values
        out = BaseModelOutputWithPast(
            last_hidden_state=hidden, past_key_values=next_cache,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


class DecoderForCausalLM(PreTrainedModel):
    """Decoder + LM head: input ids [B, T] -> next-token logits [B, T, V] (float32)."""

    base_model_class: type[DecoderModel] = DecoderModel
    _tied_weights_keys = ["lm_head.weight"]

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def __init__(self, config):
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.vocab_size = config.vocab_size
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache_position=None, num_logits_to_keep: int = 0,
                **kwargs):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        base = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                          output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                          return_dict=True, cache_position=cache_position)
        hidden = base.last_hidden_state
        logits = self.lm_head(hidden[:, -num_logits_to_keep:, :]).float()  # 0 keeps every position
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        out = CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=base.past_key_values,
                                     hidden_states=base.hidden_states, attentions=base.attentions)
        return out if return_dict else out.to_tuple()


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t; `ignore_index` labels are skipped."""
    shifted_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].reshape(-1).to(logits.device)
    return nn.functional.cross_entropy(shifted_logits, shifted_labels, ignore_index=ignore_index)
