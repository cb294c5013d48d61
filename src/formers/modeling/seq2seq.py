"""The encoder-decoder transformer every seq2seq family (T5, BART, M2M100, Marian) is built from.

Data flow:  input ids [B, S] -> shared embedding -> encoder stack -> encoder states [B, S, C]
            decoder ids [B, T] -> shared embedding -> decoder stack (self-attention over the decoder's
            past, cross-attention over the encoder states) -> LM head -> logits [B, T, V]
A family states its differences by overriding hooks, never by flags in here:
  - `Seq2SeqStack.embed_inputs` (learned / sinusoidal positions, an embedding norm) and
    `Seq2SeqStack.position_bias` (T5's relative position buckets: an additive [1, H, T, S] score term);
  - `Seq2SeqModel.make_stack`, `make_layer`, `make_mlp`, `make_norm`, `attention_spec`, `embed_scale`;
  - `Seq2SeqForConditionalGeneration.final_logits` (T5's d_model**-0.5 rescale, BART's logits bias).
Layer wiring: `pre_norm` h += f(norm(h)) (T5, mBART, M2M100) or post-norm h = norm(h + f(h)) (BART, Marian).
Cross-attention keys/values depend only on the encoder output: they are projected once and kept in the
`EncoderDecoderCache`'s cross-attention cache (`is_updated[layer]` says they are there).
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import Cache, DynamicCache
from ..cache.encoder_decoder import EncoderDecoderCache
from ..errors import ConfigError, GenerationError
from ..modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from ..modeling_utils import PreTrainedModel
from .attention import Attention, AttentionSpec
from .layers import Embedding, Linear
from .masks import build_attention_mask


class CrossAttention(Attention):
    """Decoder queries [B, T, C] over encoder states [B, S, C]; K/V projected once into the cache."""

    def forward(self, hidden: torch.Tensor, encoder_hidden: torch.Tensor, mask: torch.Tensor,
                cache: EncoderDecoderCache | None = None, output_attentions: bool = False):
        batch, length, _ = hidden.shape
        q = self.q_proj(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        if cache is not None and cache.is_updated.get(self.layer_idx, False):
            k, v = cache.cross_attention_cache[self.layer_idx]
        else:
            source = encoder_hidden.shape[1]
            k, v = (proj(encoder_hidden).view(batch, source, self.num_kv_heads, self.head_dim).transpose(1, 2)
                    for proj in (self.k_proj, self.v_proj))
            if cache is not None:
                k, v = cache.cross_attention_cache.update(  # positions given: no host read of a static length
                    k, v, self.layer_idx, {"cache_position": torch.arange(source, device=k.device)})
                cache.is_updated[self.layer_idx] = True
        kernel, args = self._kernel(output_attentions)
        out, weights = kernel(q, k, v, mask, args)
        out = out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(out), weights


class Seq2SeqLayer(nn.Module):
    """One encoder layer (self-attention, MLP) or decoder layer (self-attention, cross-attention, MLP)."""

    def __init__(self, self_attn: Attention, mlp: nn.Module, norm, cross_attn: CrossAttention | None = None,
                 pre_norm: bool = True, dropout: float = 0.0):
        super().__init__()
        self.pre_norm, self.dropout = pre_norm, dropout
        self.self_attn, self.self_attn_layer_norm = self_attn, norm()
        if cross_attn is not None:
            self.encoder_attn, self.encoder_attn_layer_norm = cross_attn, norm()
        self.mlp, self.final_layer_norm = mlp, norm()

    def _residual(self, hidden: torch.Tensor, norm: nn.Module, branch) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, weights = branch(norm(hidden) if self.pre_norm else hidden)
        hidden = hidden + F.dropout(out, self.dropout, self.training)
        return (hidden if self.pre_norm else norm(hidden)), weights

    def forward(self, hidden, self_mask, cache=None, cache_position=None, encoder_hidden=None, cross_mask=None,
                output_attentions: bool = False):
        """-> (hidden [B, T, C], self-attention weights or None, cross-attention weights or None)."""
        hidden, self_w = self._residual(hidden, self.self_attn_layer_norm, lambda x: self.self_attn(
            x, None, None, self_mask, cache, cache_position, output_attentions))
        cross_w = None
        if encoder_hidden is not None:
            hidden, cross_w = self._residual(hidden, self.encoder_attn_layer_norm, lambda x: self.encoder_attn(
                x, encoder_hidden, cross_mask, cache, output_attentions))
        hidden, _ = self._residual(hidden, self.final_layer_norm, lambda x: (self.mlp(x), None))
        return hidden, self_w, cross_w


def padding_mask(attention_mask: torch.Tensor | None, batch: int, length: int, dtype, device) -> torch.Tensor:
    """[B, S] of 1/0 (None: nothing padded) -> additive [B, 1, 1, S]. Always explicit: SDPA would read a
    missing mask as causal."""
    if attention_mask is None:
        return torch.zeros((batch, 1, 1, length), dtype=dtype, device=device)
    mask = torch.zeros(attention_mask.shape, dtype=dtype, device=device)
    return mask.masked_fill_(attention_mask == 0, torch.finfo(dtype).min)[:, None, None, :]


class Seq2SeqStack(nn.Module):
    """The encoder (`is_decoder=False`) or decoder stack; `embed` turns ids into (scaled) token embeddings."""

    def __init__(self, config, is_decoder: bool, layers: list[nn.Module], norm: nn.Module | None, embed):
        super().__init__()
        self.config, self.is_decoder = config, is_decoder
        self.embed = embed  # the parent's shared embedding lookup (a function: its weight is saved once)
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    # --- family hooks ------------------------------------------------------------------------
    def embed_inputs(self, hidden: torch.Tensor, input_ids: torch.Tensor | None, cache_position: torch.Tensor,
                     total_length: int) -> torch.Tensor:
        """Token embeddings [B, T, C] -> the first layer's input (positions, embedding norm, dropout);
        `total_length` (host int) = positions seen once these are fed."""
        return hidden

    def check_length(self, total_length: int, limit: int) -> None:
        """Refuse inputs longer than a learned/fixed position table of `limit` rows (a host-int check)."""
        if total_length > limit:
            side = "decoder" if self.is_decoder else "encoder"
            raise GenerationError(f"{side} input of {total_length} positions is longer than "
                                  f"config.max_position_embeddings={limit}; truncate the input (e.g. "
                                  f"tokenizer(..., truncation=True, max_length={limit})) or generate fewer tokens")

    def position_bias(self, cache_position: torch.Tensor, key_length: int) -> torch.Tensor | None:
        """An additive [1, H, T, S] term on every self-attention score (T5), or None."""
        return None

    # --- the forward pass ----------------------------------------------------------------------
    def _self_mask(self, attention_mask, cache_position, key_length: int, batch: int, dtype, device,
                   output_attentions: bool, key_positions: torch.Tensor | None = None):
        bias = self.position_bias(cache_position, key_length)
        if self.is_decoder:
            implicit = bias is None and self.config._attn_implementation != "eager" and not output_attentions
            mask = build_attention_mask(attention_mask, cache_position, key_length, dtype,
                                        allow_implicit_causal=implicit, key_positions=key_positions)
            if mask is None and bias is not None:
                mask = build_attention_mask(None, cache_position, key_length, dtype)
        else:
            mask = padding_mask(attention_mask, batch, key_length, dtype, device)
        return mask if bias is None else mask + bias.to(dtype)

    def forward(self, input_ids=None, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                inputs_embeds=None, past_key_values=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache_position=None, **kwargs):
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise GenerationError(f"{'decoder' if self.is_decoder else 'encoder'} forward: pass exactly one of "
                                  "`input_ids` or `inputs_embeds`")
        hidden = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        batch, length = hidden.shape[:2]
        cache = past_key_values if self.is_decoder and use_cache else None
        slots = cache.self_attention_cache.get_max_length() if cache is not None else None  # static: fixed
        if cache_position is None or slots is None:  # (a static cache's length is a device value: not read)
            past = cache.get_seq_length() if cache is not None else 0
            cache_position = torch.arange(past, past + length, device=hidden.device) \
                if cache_position is None else cache_position
        total = slots if slots is not None else past + length
        hidden = self.embed_inputs(hidden, input_ids, cache_position, total)
        slot_positions = cache.self_attention_cache.key_positions(cache_position) if cache is not None else None
        self_mask = self._self_mask(attention_mask, cache_position, total, batch, hidden.dtype,
                                    hidden.device, output_attentions, slot_positions)
        cross_mask = None
        if encoder_hidden_states is not None:
            cross_mask = padding_mask(encoder_attention_mask, batch, encoder_hidden_states.shape[1], hidden.dtype,
                                      hidden.device)
        all_hidden, all_self, all_cross = [], [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden, self_w, cross_w = layer(hidden, self_mask, cache, cache_position, encoder_hidden_states,
                                            cross_mask, output_attentions)
            all_self.append(self_w)
            all_cross.append(cross_w)
        if self.norm is not None:
            hidden = self.norm(hidden)
        if output_hidden_states:
            all_hidden.append(hidden)
        extras = {"hidden_states": tuple(all_hidden) if output_hidden_states else None,
                      "attentions": tuple(all_self) if output_attentions else None}
        if not self.is_decoder:
            out = BaseModelOutput(last_hidden_state=hidden, **extras)
        else:
            out = BaseModelOutputWithPastAndCrossAttentions(
                last_hidden_state=hidden, past_key_values=past_key_values if use_cache else None,
                cross_attentions=tuple(all_cross) if output_attentions and encoder_hidden_states is not None
                else None, **extras)
        return out if return_dict else out.to_tuple()


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
                       ) -> torch.Tensor:
    """labels [B, T] -> decoder inputs [B, T]: start token first, labels shifted right, -100 -> pad."""
    if decoder_start_token_id is None:
        raise ConfigError("config.decoder_start_token_id must be set to shift `labels` into decoder inputs")
    if pad_token_id is None:
        raise ConfigError("config.pad_token_id must be set to shift `labels` into decoder inputs")
    shifted = input_ids.new_empty(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


class SharedEmbeddingEncoder:
    """Accessors of a model holding a `shared` token embedding and an `encoder` stack (Seq2SeqModel and the
    encoder-only T5EncoderModel)."""

    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.shared(input_ids)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value

    def get_encoder(self) -> Seq2SeqStack:
        return self.encoder


class Seq2SeqModel(SharedEmbeddingEncoder, PreTrainedModel):
    """Shared embedding + encoder + decoder (the family's `XModel`): -> `Seq2SeqModelOutput`."""

    base_model_prefix: ClassVar[str] = "model"

    def __init__(self, config):
        super().__init__(config)
        self.shared = Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = self.make_stack(config, is_decoder=False)
        self.decoder = self.make_stack(config, is_decoder=True)

    # --- family hooks ------------------------------------------------------------------------
    def make_stack(self, config, is_decoder: bool) -> Seq2SeqStack:
        raise NotImplementedError

    def get_decoder(self) -> Seq2SeqStack:
        return self.decoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                head_mask=None, decoder_head_mask=None, cross_attn_head_mask=None, encoder_outputs=None,
                past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache_position=None, **kwargs):
        config = self.config
        use_cache = config.use_cache if use_cache is None else use_cache
        return_dict = config.return_dict if return_dict is None else return_dict
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                           inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                                           output_hidden_states=output_hidden_states, return_dict=True)
        elif not isinstance(encoder_outputs, BaseModelOutput):  # a tuple, as transformers accepts
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        legacy = use_cache and not isinstance(past_key_values, Cache)
        if legacy:
            past_key_values = EncoderDecoderCache.from_legacy_cache(past_key_values)
        elif isinstance(past_key_values, DynamicCache):  # a plain cache: the cross-attention half is added
            past_key_values = EncoderDecoderCache(past_key_values, DynamicCache())
        decoded = self.decoder(input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
                               encoder_hidden_states=encoder_outputs.last_hidden_state,
                               encoder_attention_mask=attention_mask, inputs_embeds=decoder_inputs_embeds,
                               past_key_values=past_key_values, use_cache=use_cache,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                               return_dict=True, cache_position=cache_position)
        cache = decoded.past_key_values
        out = Seq2SeqModelOutput(
            last_hidden_state=decoded.last_hidden_state,
            past_key_values=cache.to_legacy_cache() if legacy and cache is not None else cache,
            decoder_hidden_states=decoded.hidden_states, decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions, encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states, encoder_attentions=encoder_outputs.attentions)
        return out if return_dict else out.to_tuple()


class Seq2SeqForConditionalGeneration(PreTrainedModel):
    """Seq2SeqModel + LM head: -> `Seq2SeqLMOutput` (logits [B, T, V]; loss when `labels` are given)."""

    base_model_class: ClassVar[type[Seq2SeqModel]] = Seq2SeqModel
    _tied_weights_keys: ClassVar[list[str]] = ["lm_head.weight"]

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def __init__(self, config):
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)

    def final_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states [B, T, C] -> logits [B, T, V] (family hook)."""
        return self.lm_head(hidden)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.shared = value

    def get_encoder(self) -> Seq2SeqStack:
        return self.model.encoder

    def get_decoder(self) -> Seq2SeqStack:
        return self.model.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                head_mask=None, decoder_head_mask=None, cross_attn_head_mask=None, encoder_outputs=None,
                past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, cache_position=None,
                num_logits_to_keep: int = 0, **kwargs):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False if use_cache is None else use_cache
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        base = self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                          decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                          past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                          decoder_inputs_embeds=decoder_inputs_embeds, use_cache=use_cache,
                          output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                          return_dict=True, cache_position=cache_position)
        logits = self.final_logits(base.last_hidden_state[:, -num_logits_to_keep:, :])  # 0 keeps all
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                   labels.reshape(-1).to(logits.device), ignore_index=-100)
        out = Seq2SeqLMOutput(loss=loss, logits=logits, past_key_values=base.past_key_values,
                              decoder_hidden_states=base.decoder_hidden_states,
                              decoder_attentions=base.decoder_attentions, cross_attentions=base.cross_attentions,
                              encoder_last_hidden_state=base.encoder_last_hidden_state,
                              encoder_hidden_states=base.encoder_hidden_states,
                              encoder_attentions=base.encoder_attentions)
        return out if return_dict else out.to_tuple()

    def make_generation_cache(self, batch_size: int, max_length: int, device, dtype) -> Cache:
        return EncoderDecoderCache(DynamicCache(), DynamicCache())

    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, **kwargs):
        """Encoder once, then the shared decoding strategies over the decoder (generation/encoder_decoder.py)."""
        from ..generation.encoder_decoder import generate_seq2seq
        return generate_seq2seq(self, inputs, generation_config, **kwargs)


def make_attention(config, spec: AttentionSpec, layer_idx: int, cross: bool = False,
                   dropout: float = 0.0) -> Attention:
    """Self- or cross-attention of one layer, with the config's kernel."""
    cls = CrossAttention if cross else Attention
    return cls(config.d_model, spec, layer_idx, dropout=dropout, implementation=config._attn_implementation or "sdpa")
