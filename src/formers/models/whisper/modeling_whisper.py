"""Whisper on the encoder-decoder core.

Encoder: log-mel [B, n_mels, 3000] -> conv1 (k3, s1) + GELU -> conv2 (k3, s2) + GELU -> [B, 1500, C]
         + fixed sinusoidal positions -> pre-norm layers -> LayerNorm.
Decoder: token embeddings + learned positions -> pre-norm layers (self, cross, MLP) -> LayerNorm ->
         logits through the (tied) token embedding. The key projections carry no bias.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, GenerationError
from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionSpec
from ...modeling.layers import Embedding, Linear
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from ...modeling.seq2seq import (
    Seq2SeqForConditionalGeneration,
    Seq2SeqLayer,
    Seq2SeqModel,
    Seq2SeqStack,
    make_attention,
)
from ...modeling_outputs import BaseModelOutput
from .configuration_whisper import WhisperConfig

WHISPER_KEYS = KeyMap(prefix="model", renames=(
    ("decoder.embed_tokens.weight", "shared.weight"),
    ("{S}.layers.{L}.{A}.out_proj.{P}", "{S}.layers.{L}.{A}.o_proj.{P}"),
    ("{S}.layers.{L}.fc1.{P}", "{S}.layers.{L}.mlp.up_proj.{P}"),
    ("{S}.layers.{L}.fc2.{P}", "{S}.layers.{L}.mlp.down_proj.{P}"),
    ("{S}.layer_norm.{P}", "{S}.norm.{P}")), head_renames=(("proj_out.weight", "lm_head.weight"),))


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """[length, channels]: sin of position x geometric frequencies, then cos (Whisper's encoder table)."""
    step = math.log(max_timescale) / (channels // 2 - 1)
    frequencies = torch.exp(-step * torch.arange(channels // 2))
    angles = torch.arange(length)[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class WhisperEncoderStack(Seq2SeqStack):
    """Convolutional front end + sinusoidal positions before the shared encoder layers."""

    def __init__(self, config: WhisperConfig, layers, norm):
        super().__init__(config, False, layers, norm, embed=None)
        self.conv1 = nn.Conv1d(config.num_mel_bins, config.d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(config.d_model, config.d_model, kernel_size=3, stride=2, padding=1)
        self.embed_positions = Embedding(config.max_source_positions, config.d_model)
        self.embed_positions.requires_grad_(False)

    def embed_inputs(self, hidden, input_ids, cache_position, total_length=None):
        hidden = hidden + self.embed_positions.weight[: hidden.shape[1]].to(hidden.dtype)
        return F.dropout(hidden, self.config.dropout, self.training)

    def forward(self, input_features=None, attention_mask=None, head_mask=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        """input_features [B, num_mel_bins, 2 * max_source_positions] -> states [B, max_source_positions, C]."""
        frames = 2 * self.config.max_source_positions
        if input_features is None or input_features.dim() != 3 or input_features.shape[1:] != (
                self.config.num_mel_bins, frames):
            shape = None if input_features is None else tuple(input_features.shape)
            raise ConfigError(f"Whisper encoder: input_features must be [batch, {self.config.num_mel_bins}, "
                              f"{frames}] (30 s of log-mel frames; pad with the feature extractor), got {shape}")
        hidden = F.gelu(self.conv1(input_features))
        hidden = F.gelu(self.conv2(hidden)).permute(0, 2, 1)
        # 4.45's encoder ignores the features' attention mask: every frame (padding included) is attended
        return super().forward(inputs_embeds=hidden, attention_mask=None, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=return_dict)


class WhisperDecoderStack(Seq2SeqStack):
    """Learned decoder positions. As in 4.45 they count the unpadded tokens of the decoder mask
    (cumsum - 1, clamped at 0), so a left-padded prompt (earlier segments' text) starts its real tokens
    at position 0; without a mask they are the cache positions."""

    def __init__(self, config: WhisperConfig, layers, norm, embed):
        super().__init__(config, True, layers, norm, embed)
        self.embed_positions = Embedding(config.max_target_positions, config.d_model)

    def embed_inputs(self, hidden, input_ids, cache_position, total_length=None):
        return hidden  # positions were added in forward (they need the mask)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, past_key_values=None, use_cache=None,
                cache_position=None, **kwargs):
        if (input_ids is None) == (inputs_embeds is None):
            raise GenerationError("decoder forward: pass exactly one of `input_ids` or `inputs_embeds`")
        hidden = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        if cache_position is None:
            past = past_key_values.get_seq_length() if past_key_values is not None and use_cache else 0
            cache_position = torch.arange(past, past + hidden.shape[1], device=hidden.device)
        positions = cache_position if attention_mask is None or attention_mask.dim() != 2 else \
            (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, cache_position]
        hidden = F.dropout(hidden + self.embed_positions(positions).to(hidden.dtype), self.config.dropout, self.training)
        return super().forward(inputs_embeds=hidden, attention_mask=attention_mask, past_key_values=past_key_values,
                               use_cache=use_cache, cache_position=cache_position, **kwargs)


class WhisperModel(Seq2SeqModel):
    config_class = WhisperConfig
    checkpoint_keys = WHISPER_KEYS
    main_input_name = "input_features"

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        with torch.no_grad():  # the fixed table (checkpoints also store it)
            if not self.encoder.embed_positions.weight.is_meta:
                self.encoder.embed_positions.weight.copy_(sinusoids(config.max_source_positions, config.d_model))

    def embed_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        scale = math.sqrt(self.config.d_model) if self.config.scale_embedding else 1.0
        return self.shared(input_ids) * scale

    def make_stack(self, config: WhisperConfig, is_decoder: bool) -> Seq2SeqStack:
        heads = config.decoder_attention_heads if is_decoder else config.encoder_attention_heads
        ffn = config.decoder_ffn_dim if is_decoder else config.encoder_ffn_dim
        spec = AttentionSpec(heads, heads, config.d_model // heads, qkv_bias=True, o_bias=True, rotary=None)

        def norm() -> nn.Module:
            return LayerNorm(config.d_model)

        def attention(idx: int, cross: bool):
            module = make_attention(config, spec, idx, cross=cross, dropout=config.attention_dropout)
            module.k_proj = Linear(config.d_model, config.d_model, bias=False)  # Whisper's keys have no bias
            return module

        count = config.decoder_layers if is_decoder else config.encoder_layers
        layers = [Seq2SeqLayer(attention(idx, False), MLP(config.d_model, ffn, config.activation_function), norm,
                               attention(idx, True) if is_decoder else None, pre_norm=True, dropout=config.dropout)
                  for idx in range(count)]
        if is_decoder:
            return WhisperDecoderStack(config, layers, norm(), self.embed_ids)
        return WhisperEncoderStack(config, layers, norm())

    def forward(self, input_features=None, attention_mask=None, decoder_input_ids=None, encoder_outputs=None,
                **kwargs):
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_features, output_attentions=kwargs.get("output_attentions"),
                                           output_hidden_states=kwargs.get("output_hidden_states"),
                                           return_dict=True)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        # the decoder attends to every encoder frame: no cross-attention mask
        return super().forward(decoder_input_ids=decoder_input_ids, encoder_outputs=encoder_outputs, **kwargs)


class WhisperForConditionalGeneration(Seq2SeqForConditionalGeneration):
    config_class = WhisperConfig
    base_model_class = WhisperModel
    checkpoint_keys = WHISPER_KEYS
    main_input_name = "input_features"

    def forward(self, input_features=None, attention_mask=None, decoder_input_ids=None, encoder_outputs=None,
                **kwargs):
        if encoder_outputs is None and input_features is not None:
            encoder_outputs = self.model.encoder(input_features, output_attentions=kwargs.get("output_attentions"),
                                                 output_hidden_states=kwargs.get("output_hidden_states"),
                                                 return_dict=True)
        return super().forward(decoder_input_ids=decoder_input_ids, encoder_outputs=encoder_outputs, **kwargs)

    def generate(self, input_features: torch.Tensor | None = None, generation_config=None, **kwargs):
        """Whisper's generate (short-form: forced task prompt, timestamps); see generation_whisper.py."""
        from .generation_whisper import whisper_generate
        return whisper_generate(self, input_features, generation_config, **kwargs)
