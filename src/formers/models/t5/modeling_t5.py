"""T5 / Flan-T5 / mT5 on the encoder-decoder core: relative position buckets (a learned per-head bias
computed once per stack and added to every self-attention score), unscaled attention scores, RMS
layer norms without mean or bias, a ReLU or gated-GELU feed-forward without biases, pre-norm layers,
and with tied embeddings the decoder output rescaled by d_model**-0.5 before the LM head."""
from __future__ import annotations

import math

import torch
from torch import nn

from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionSpec
from ...modeling.layers import Embedding
from ...modeling.mlp import MLP, GatedMLP
from ...modeling.norms import RMSNorm
from ...modeling.seq2seq import (
    Seq2SeqForConditionalGeneration,
    Seq2SeqLayer,
    Seq2SeqModel,
    Seq2SeqStack,
    SharedEmbeddingEncoder,
    make_attention,
    shift_tokens_right,
)
from ...modeling_utils import PreTrainedModel
from .configuration_t5 import T5Config


def _key_renames(gated: bool) -> tuple[tuple[str, str], ...]:
    """T5's checkpoint names (encoder.block.N.layer.K.*) -> the core's (encoder.layers.N.*); a gated
    feed-forward names its projections wi_0 (gate), wi_1 (up), wo, a plain one wi (up), wo."""
    pairs = [("{S}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "{S}.relative_attention_bias.weight"),
             ("{S}.final_layer_norm.weight", "{S}.norm.weight"),
             ("{S}.block.{L}.layer.0.SelfAttention.{W}.weight", "{S}.layers.{L}.self_attn.{W}_proj.weight"),
             ("{S}.block.{L}.layer.0.layer_norm.weight", "{S}.layers.{L}.self_attn_layer_norm.weight"),
             ("decoder.block.{L}.layer.1.EncDecAttention.{W}.weight", "decoder.layers.{L}.encoder_attn.{W}_proj.weight"),
             ("decoder.block.{L}.layer.1.layer_norm.weight", "decoder.layers.{L}.encoder_attn_layer_norm.weight")]
    for stack, ff in (("encoder", 1), ("decoder", 2)):
        pairs.append((f"{stack}.block.{{L}}.layer.{ff}.layer_norm.weight", f"{stack}.layers.{{L}}.final_layer_norm.weight"))
        projections = (("wi_0", "gate_proj"), ("wi_1", "up_proj")) if gated else (("wi", "up_proj"),)
        for theirs, ours in (*projections, ("wo", "down_proj")):
            pairs.append((f"{stack}.block.{{L}}.layer.{ff}.DenseReluDense.{theirs}.weight",
                          f"{stack}.layers.{{L}}.mlp.{ours}.weight"))
    return tuple(pairs)


T5_KEYS = {gated: KeyMap(prefix="model", renames=_key_renames(gated),
                         ignored=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"))
           for gated in (False, True)}


class T5KeyLayout:
    """Both T5 classes read their checkpoint layout from the config (gated or plain feed-forward)."""

    @classmethod
    def key_map(cls, config: T5Config) -> KeyMap:
        return T5_KEYS[config.is_gated_act]

    def _shift_right(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Target ids [B, T] -> decoder inputs (start token first, -100 -> pad), under 4.45's name."""
        return shift_tokens_right(input_ids, self.config.pad_token_id, self.config.decoder_start_token_id)


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """key - query offsets -> bucket ids: exact buckets for small offsets, log-spaced up to max_distance;
    bidirectional (encoder) splits the buckets between future and past, the decoder sees only the past."""
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    max_exact = num_buckets // 2
    log_bucket = max_exact + (torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
                              * (num_buckets - max_exact)).long()
    log_bucket = log_bucket.clamp(max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, log_bucket)


class T5Stack(Seq2SeqStack):
    """Encoder or decoder stack with T5's shared relative position bias."""

    def __init__(self, config: T5Config, is_decoder: bool, layers, norm, embed):
        super().__init__(config, is_decoder, layers, norm, embed)
        self.relative_attention_bias = Embedding(config.relative_attention_num_buckets, config.num_heads)

    def position_bias(self, cache_position: torch.Tensor, key_length: int) -> torch.Tensor:
        keys = torch.arange(key_length, device=cache_position.device)
        buckets = relative_position_bucket(keys[None, :] - cache_position[:, None], not self.is_decoder,
                                           self.config.relative_attention_num_buckets,
                                           self.config.relative_attention_max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # [1, H, T, S]


class T5Model(T5KeyLayout, Seq2SeqModel):
    config_class = T5Config

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.shared.padding_idx = None  # 4.45's T5 embedding has no padding row: the pad id's row trains too

    def make_stack(self, config: T5Config, is_decoder: bool) -> T5Stack:
        spec = AttentionSpec(config.num_heads, config.num_heads, config.d_kv, scale=1.0, rotary=None)

        def norm() -> nn.Module:
            return RMSNorm(config.d_model, eps=config.layer_norm_epsilon)

        def mlp() -> nn.Module:
            if config.is_gated_act:
                return GatedMLP(config.d_model, config.d_ff, config.dense_act_fn)
            return MLP(config.d_model, config.d_ff, config.dense_act_fn, bias=False)

        count = config.num_decoder_layers if is_decoder else config.num_layers
        layers = [Seq2SeqLayer(make_attention(config, spec, idx), mlp(), norm,
                               make_attention(config, spec, idx, cross=True) if is_decoder else None,
                               pre_norm=True, dropout=config.dropout_rate) for idx in range(count)]
        return T5Stack(config, is_decoder, layers, norm(), self.embed_ids)


class T5ForConditionalGeneration(T5KeyLayout, Seq2SeqForConditionalGeneration):
    config_class = T5Config
    base_model_class = T5Model

    def final_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.config.tie_word_embeddings:  # tied embeddings: rescale before the shared projection
            hidden = hidden * self.config.d_model ** -0.5
        return self.lm_head(hidden)

    def _state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        """T5's checkpoints keep the base model's keys at the top level (no `model.` prefix)."""
        return {key.removeprefix("model."): value for key, value in super()._state_dict_for_saving().items()}


def _encoder_only_keys(gated: bool) -> KeyMap:
    """T5's layout for the encoder alone: a full checkpoint's decoder and LM head are skipped, not reported."""
    pairs = _key_renames(gated)
    decoder = tuple(ck.replace("{S}", "decoder") for ck, _ in pairs if ck.startswith(("{S}", "decoder")))
    return KeyMap(prefix="model", renames=pairs, ignored=T5_KEYS[gated].ignored + decoder + ("lm_head.weight",))


T5_ENCODER_KEYS = {gated: _encoder_only_keys(gated) for gated in (False, True)}


class T5EncoderModel(SharedEmbeddingEncoder, PreTrainedModel):
    """T5's encoder alone (embedding + encoder stack) -> `BaseModelOutput` (e.g. text features for diffusion
    models). Loads T5EncoderModel checkpoints and the encoder half of full T5 checkpoints."""

    config_class = T5Config

    @classmethod
    def key_map(cls, config: T5Config) -> KeyMap:
        return T5_ENCODER_KEYS[config.is_gated_act]

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.shared = Embedding(config.vocab_size, config.d_model)  # no padding row, as T5Model
        self.encoder = T5Model.make_stack(self, config, is_decoder=False)

    def forward(self, input_ids=None, attention_mask=None, head_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                            return_dict=return_dict)
