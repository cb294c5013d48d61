"""BART on the encoder-decoder core: learned positions offset by 2, an embedding LayerNorm, optional
sqrt(d_model) embedding scale, post-norm layers with biased projections and a GELU feed-forward, and a
`final_logits_bias` added to the LM head's output. mBART (models/mbart) reuses it with pre-norm layers
and a final LayerNorm per stack."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionSpec
from ...modeling.layers import Embedding
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from ...modeling.seq2seq import (
    Seq2SeqForConditionalGeneration,
    Seq2SeqLayer,
    Seq2SeqModel,
    Seq2SeqStack,
    make_attention,
    shift_tokens_right,
)
from ...modeling.seq2seq_causal import Seq2SeqDecoderForCausalLM
from .configuration_bart import BartConfig

POSITION_OFFSET = 2  # BART's learned position table keeps two rows before position 0 (a fairseq legacy)


def bart_key_map(extra: tuple[tuple[str, str], ...] = ()) -> KeyMap:
    """BART-style checkpoint names (out_proj, fc1/fc2, layer_norm) -> the core's."""
    renames = (("{S}.layers.{L}.{A}.out_proj.{P}", "{S}.layers.{L}.{A}.o_proj.{P}"),
               ("{S}.layers.{L}.fc1.{P}", "{S}.layers.{L}.mlp.up_proj.{P}"),
               ("{S}.layers.{L}.fc2.{P}", "{S}.layers.{L}.mlp.down_proj.{P}"),
               ("{S}.layer_norm.{P}", "{S}.norm.{P}")) + extra
    return KeyMap(prefix="model", renames=renames,
                  ignored=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"))


class BartStack(Seq2SeqStack):
    """Learned positions (+2 offset) and the embedding LayerNorm before the first layer."""

    def __init__(self, config, is_decoder: bool, layers, norm, embed):
        super().__init__(config, is_decoder, layers, norm, embed)
        self.embed_positions = Embedding(config.max_position_embeddings + POSITION_OFFSET, config.d_model)
        self.layernorm_embedding = LayerNorm(config.d_model)

    def embed_inputs(self, hidden: torch.Tensor, input_ids: torch.Tensor | None, cache_position: torch.Tensor,
                     total_length: int) -> torch.Tensor:
        self.check_length(total_length, self.config.max_position_embeddings)
        hidden = hidden + self.embed_positions(cache_position + POSITION_OFFSET).to(hidden.dtype)
        return nn.functional.dropout(self.layernorm_embedding(hidden), self.config.dropout, self.training)


class BartModel(Seq2SeqModel):
    config_class = BartConfig
    checkpoint_keys = bart_key_map()
    pre_norm: ClassVar[bool] = False  # mBART: True (and a final LayerNorm per stack)
    stack_class: ClassVar[type[Seq2SeqStack]] = BartStack

    def default_decoder_inputs(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Decoder inputs when none are given: the encoder ids shifted right (BART's denoising setup)."""
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, *args, **kwargs):
        """As Seq2SeqModel's; without decoder_input_ids/decoder_inputs_embeds the decoder reads the
        shifted encoder ids (so `model(input_ids).logits` works, as in 4.45's mask-filling example)."""
        if decoder_input_ids is None and kwargs.get("decoder_inputs_embeds") is None and input_ids is not None:
            decoder_input_ids = self.default_decoder_inputs(input_ids)
        return super().forward(input_ids, attention_mask, decoder_input_ids, *args, **kwargs)

    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        scale = self.config.d_model ** 0.5 if self.config.scale_embedding else 1.0
        return self.shared(input_ids) * scale

    def make_stack(self, config, is_decoder: bool) -> Seq2SeqStack:
        heads = config.decoder_attention_heads if is_decoder else config.encoder_attention_heads
        ffn = config.decoder_ffn_dim if is_decoder else config.encoder_ffn_dim
        spec = AttentionSpec(heads, heads, config.d_model // heads, qkv_bias=True, o_bias=True, rotary=None)

        def norm() -> nn.Module:
            return LayerNorm(config.d_model)

        count = config.decoder_layers if is_decoder else config.encoder_layers
        layers = [Seq2SeqLayer(make_attention(config, spec, idx, dropout=config.attention_dropout),
                               MLP(config.d_model, ffn, config.activation_function), norm,
                               make_attention(config, spec, idx, cross=True, dropout=config.attention_dropout)
                               if is_decoder else None, pre_norm=self.pre_norm, dropout=config.dropout)
                  for idx in range(count)]
        return self.stack_class(config, is_decoder, layers, norm() if self.pre_norm else None, self.embed_ids)


class BartForConditionalGeneration(Seq2SeqForConditionalGeneration):
    config_class = BartConfig
    base_model_class = BartModel
    checkpoint_keys = bart_key_map()

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("final_logits_bias", torch.zeros((1, config.vocab_size)))

    def final_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden) + self.final_logits_bias.to(hidden.dtype)


class BartForCausalLM(Seq2SeqDecoderForCausalLM):
    """BART's decoder alone (keys `model.decoder.*`, its own `embed_tokens`) with an LM head, as 4.45."""
    config_class = BartConfig
    base_model_class = BartModel
    checkpoint_keys = KeyMap(prefix="model", renames=bart_key_map().renames)
