"""A seq2seq family's decoder used alone as a causal LM (4.45's BartForCausalLM, MBartForCausalLM,
MarianForCausalLM): `model.decoder` is the family's decoder stack, owning its token embedding
(`model.decoder.embed_tokens`), and `lm_head` is tied to it. Cross-attention runs only when
`encoder_hidden_states` are given (as 4.45; the layers and their weights are there either way).
The labels are compared with the logits position by position (4.45 does not shift them here).
"""
from __future__ import annotations

import copy
from typing import ClassVar

import torch.nn.functional as F
from torch import nn

from ..cache import Cache, DynamicCache
from ..cache.encoder_decoder import EncoderDecoderCache
from ..errors import ConfigError
from ..modeling_outputs import CausalLMOutputWithCrossAttentions
from ..modeling_utils import PreTrainedModel
from .layers import Embedding, Linear
from .seq2seq import Seq2SeqStack


class _DecoderBuilder:
    """Stands in for the family's base model while the family's `make_stack` builds the decoder alone."""

    def __init__(self, base_model_class, embed):
        self.pre_norm, self.stack_class, self.embed_ids = base_model_class.pre_norm, base_model_class.stack_class, embed


class Seq2SeqDecoderWrapper(nn.Module):
    """4.45's `XDecoderWrapper`: the decoder stack under the name `decoder`."""

    def __init__(self, config, base_model_class):
        super().__init__()
        scale = config.d_model ** 0.5 if config.scale_embedding else 1.0
        embed_tokens = Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.decoder: Seq2SeqStack = base_model_class.make_stack(
            _DecoderBuilder(base_model_class, lambda ids: self.decoder.embed_tokens(ids) * scale), config, True)
        self.decoder.embed_tokens = embed_tokens


class Seq2SeqDecoderForCausalLM(PreTrainedModel):
    """Decoder stack + LM head -> `CausalLMOutputWithCrossAttentions`."""

    base_model_class: ClassVar[type]
    _tied_weights_keys: ClassVar[list[str]] = ["lm_head.weight"]

    def __init__(self, config):
        config = copy.deepcopy(config)  # as 4.45: this model's config says decoder-only
        config.is_decoder, config.is_encoder_decoder = True, False
        super().__init__(config)
        self.model = Seq2SeqDecoderWrapper(config, self.base_model_class)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.decoder.embed_tokens = value

    def get_decoder(self) -> Seq2SeqStack:
        return self.model.decoder

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                head_mask=None, cross_attn_head_mask=None, past_key_values=None, inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache_position=None, num_logits_to_keep: int = 0, **kwargs):
        config = self.config
        use_cache = config.use_cache if use_cache is None else use_cache
        return_dict = config.return_dict if return_dict is None else return_dict
        if past_key_values is not None and not isinstance(past_key_values, Cache):
            raise ConfigError("ForCausalLM.forward(past_key_values=...): expected a formers Cache (e.g. DynamicCache)")
        cache = None
        if use_cache:  # the self-attention cache is the caller's; the cross-attention half lives for this call
            if isinstance(past_key_values, EncoderDecoderCache):
                cache = past_key_values
            else:
                cache = EncoderDecoderCache(past_key_values if past_key_values is not None else DynamicCache(),
                                            DynamicCache())
        decoded = self.model.decoder(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, inputs_embeds=inputs_embeds, past_key_values=cache,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=True, cache_position=cache_position)
        logits = self.lm_head(decoded.last_hidden_state[:, -num_logits_to_keep:, :])  # 0 keeps all
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device),
                                   ignore_index=-100)
        returned = None
        if cache is not None:
            returned = cache if isinstance(past_key_values, EncoderDecoderCache) else cache.self_attention_cache
        out = CausalLMOutputWithCrossAttentions(loss=loss, logits=logits, past_key_values=returned,
                                                hidden_states=decoded.hidden_states, attentions=decoded.attentions,
                                                cross_attentions=decoded.cross_attentions)
        return out if return_dict else out.to_tuple()
