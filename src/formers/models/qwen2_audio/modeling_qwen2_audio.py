"""Qwen2-Audio: a Whisper-shaped audio encoder, a linear projector and a Qwen2 decoder.

Audio:  log-mel [N, n_mels, 3000] -> Whisper's conv front end + positions + encoder layers (padded frames
        masked as keys) -> average pool (stride 2) -> LayerNorm -> [N, 750, d_model] -> projector -> [N, 750, H]
Text:   ids [B, L] -> Qwen2 embeddings; each <|AUDIO|> token replaced by its audio's valid vectors (merge.py)
        -> Qwen2 decoder over the merged sequence -> logits [B, W, V]
generate() merges the audio into the prompt once, at prefill; decode steps feed only the new tokens.
Checkpoint keys are 4.45's (`audio_tower.*`, `multi_modal_projector.linear.*`, `language_model.*`); only
the encoder layers' out_proj/fc1/fc2 are named otherwise here (formers' shared layer modules).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, GenerationError
from ...loading.key_map import KeyMap
from ...modeling.layers import Linear
from ...modeling.seq2seq import padding_mask
from ...modeling_outputs import BaseModelOutput, ModelOutput
from ...modeling_utils import PreTrainedModel
from ..registry import model_class
from ..whisper.modeling_whisper import WhisperModel
from .configuration_qwen2_audio import Qwen2AudioConfig, Qwen2AudioEncoderConfig
from .merge import merge_audio_features


def _encoder_layer_keys(prefix: str) -> tuple[tuple[str, str], ...]:
    """(checkpoint, formers) names of the encoder layers' projections below `prefix`."""
    layer = prefix + "layers.{L}."
    return ((layer + "self_attn.out_proj.{P}", layer + "self_attn.o_proj.{P}"),
            (layer + "fc1.{P}", layer + "mlp.up_proj.{P}"), (layer + "fc2.{P}", layer + "mlp.down_proj.{P}"))


ENCODER_KEYS = KeyMap(head_renames=_encoder_layer_keys(""))
MODEL_KEYS = KeyMap(head_renames=_encoder_layer_keys("audio_tower."))


@dataclass(eq=False, repr=True)
class Qwen2AudioCausalLMOutputWithPast(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Any = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    attention_mask: torch.Tensor | None = None  # the merged mask (longer than the ids when audio was merged)


class Qwen2AudioPreTrainedModel(PreTrainedModel):
    config_class = Qwen2AudioConfig

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, init_std) for linear, convolution and embedding weights; zero biases (as 4.45)."""
        config = self.config
        std = config.init_std if isinstance(config, Qwen2AudioEncoderConfig) else config.audio_config.init_std
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()


class Qwen2AudioEncoder(Qwen2AudioPreTrainedModel):
    """Whisper's encoder (its own modules: conv1/conv2/embed_positions/layers/layer_norm) + an average pool."""

    config_class = Qwen2AudioEncoderConfig
    main_input_name = "input_features"
    checkpoint_keys = ENCODER_KEYS

    def __init__(self, config: Qwen2AudioEncoderConfig):
        super().__init__(config)
        whisper = WhisperModel.make_stack(self, config, is_decoder=False)  # the recipe reads only the config
        self.conv1, self.conv2, self.embed_positions = whisper.conv1, whisper.conv2, whisper.embed_positions
        self.layers, self.layer_norm = whisper.layers, whisper.norm
        self.avg_pooler = nn.AvgPool1d(2, stride=2)

    def get_input_embeddings(self) -> nn.Module:
        return self.conv1

    @staticmethod
    def _get_feat_extract_output_lengths(input_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mel frames -> (frames after the stride-2 convolution, vectors after the pool)."""
        conv_lengths = (input_lengths - 1) // 2 + 1
        return conv_lengths, (conv_lengths - 2) // 2 + 1

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None,
                head_mask: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None):
        """input_features [N, n_mels, 2 * max_source_positions] -> [N, max_source_positions // 2, d_model].

        attention_mask: [N, max_source_positions] (1 = real frame after the convolution) or an additive
        [N, 1, S, S] mask as 4.45 passes it; None attends to every frame."""
        config = self.config
        frames = 2 * config.max_source_positions
        if input_features.dim() != 3 or input_features.shape[1:] != (config.num_mel_bins, frames):
            raise ConfigError(f"Qwen2AudioEncoder: input_features must be [batch, {config.num_mel_bins}, {frames}] "
                              f"(pad the log-mel features to {frames} frames), got {tuple(input_features.shape)}")
        if head_mask is not None:
            raise ConfigError("Qwen2AudioEncoder: head_mask is not supported by formers")
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        features = input_features.to(dtype=self.conv1.weight.dtype, device=self.conv1.weight.device)
        hidden = F.gelu(self.conv2(F.gelu(self.conv1(features)))).permute(0, 2, 1)
        hidden = F.dropout(hidden + self.embed_positions.weight.to(hidden.dtype), config.dropout, self.training)
        if attention_mask is None or attention_mask.dim() == 2:
            attention_mask = padding_mask(attention_mask, hidden.shape[0], hidden.shape[1], hidden.dtype, hidden.device)
        states, weights = [], []
        for layer in self.layers:
            states.append(hidden)
            hidden, layer_weights, _ = layer(hidden, attention_mask, output_attentions=output_attentions)
            weights.append(layer_weights)
        hidden = self.layer_norm(self.avg_pooler(hidden.permute(0, 2, 1)).permute(0, 2, 1))
        out = BaseModelOutput(last_hidden_state=hidden,
                              hidden_states=(*states, hidden) if output_hidden_states else None,
                              attentions=tuple(weights) if output_attentions else None)
        return out if (config.return_dict if return_dict is None else return_dict) else out.to_tuple()


class Qwen2AudioMultiModalProjector(nn.Module):
    def __init__(self, config: Qwen2AudioConfig):
        super().__init__()
        self.linear = Linear(config.audio_config.d_model, config.text_config.hidden_size, bias=True)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        return self.linear(audio_features)


class Qwen2AudioForConditionalGeneration(Qwen2AudioPreTrainedModel):
    checkpoint_keys = MODEL_KEYS

    def __init__(self, config: Qwen2AudioConfig):
        super().__init__(config)
        config.audio_config._attn_implementation = config._attn_implementation
        config.text_config._attn_implementation = config._attn_implementation
        self.audio_tower = Qwen2AudioEncoder(config.audio_config)
        self.multi_modal_projector = Qwen2AudioMultiModalProjector(config)
        self.language_model = model_class(config.text_config.model_type, "causal_lm")(config.text_config)
        self.vocab_size = config.text_config.vocab_size
        self.pad_token_id = config.pad_token_id if config.pad_token_id is not None else -1
        self._padding_side = "left"  # where rows line up when the mask cannot tell (merge.py)

    @classmethod
    def can_generate(cls) -> bool:
        return True

    @property
    def padding_side(self) -> str:
        return self._padding_side

    @padding_side.setter
    def padding_side(self, padding_side: str) -> None:
        if padding_side not in ("left", "right"):
            raise ConfigError(f"padding_side: expected 'left' or 'right', got {padding_side!r}")
        self._padding_side = padding_side

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.model

    def tie_weights(self) -> None:
        self.language_model.tie_weights()

    def _state_dict_for_saving(self) -> dict[str, torch.Tensor]:
        state = super()._state_dict_for_saving()
        if self.config.text_config.tie_word_embeddings:  # one copy of the shared matrix, as 4.45 saves it
            state.pop("language_model.lm_head.weight", None)
        return state

    # --- audio -> prompt ---------------------------------------------------------------------------
    def encode_audio(self, input_features: torch.Tensor, feature_attention_mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (projected audio vectors [N, T, H], valid vectors per audio [N])."""
        if feature_attention_mask is None:
            raise GenerationError("Qwen2-Audio: `feature_attention_mask` is required with `input_features` (the "
                                  "processor returns it)")
        tower = self.audio_tower
        feature_attention_mask = feature_attention_mask.to(tower.conv1.weight.device)
        conv_lengths, lengths = tower._get_feat_extract_output_lengths(feature_attention_mask.sum(-1))
        frames = (input_features.shape[-1] - 2) // 2 + 1
        frame_mask = torch.arange(frames, device=conv_lengths.device)[None, :] < conv_lengths[:, None]
        states = tower(input_features, attention_mask=frame_mask.long(), return_dict=True).last_hidden_state
        return self.multi_modal_projector(states), lengths

    def merge_audio(self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                    input_features: torch.Tensor, feature_attention_mask: torch.Tensor,
                    labels: torch.Tensor | None = None):
        """The prompt with its audio merged in (see merge.py) -> MergedPrompt."""
        vectors, lengths = self.encode_audio(input_features, feature_attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ignore_index = getattr(self.config, "ignore_index", -100)  # a checkpoint key 4.45's class does not declare
        return merge_audio_features(vectors, lengths, inputs_embeds, input_ids, attention_mask,
                                    self.config.audio_token_index, self.padding_side, labels, ignore_index)

    # --- forward -------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor | None = None, input_features: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, feature_attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values=None,
                inputs_embeds: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                use_cache: bool | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                cache_position: torch.Tensor | None = None, num_logits_to_keep: int = 0):
        """As 4.45: audio is merged when ids of more than one token come with `input_features`."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if inputs_embeds is None:
            if input_ids is None:
                raise GenerationError("Qwen2-Audio forward: pass `input_ids` or `inputs_embeds`")
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if input_features is not None and input_ids.shape[1] != 1:
                merged = self.merge_audio(input_ids, inputs_embeds, attention_mask, input_features,
                                          feature_attention_mask, labels)
                inputs_embeds, attention_mask = merged.inputs_embeds, merged.attention_mask
                position_ids, labels = merged.position_ids, merged.labels
                cache_position = None
        out = self.language_model(attention_mask=attention_mask, position_ids=position_ids,
                                  past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                                  output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                  return_dict=True, cache_position=cache_position,
                                  num_logits_to_keep=num_logits_to_keep)
        loss = None if labels is None else _loss(out.logits, labels, attention_mask)
        result = Qwen2AudioCausalLMOutputWithPast(loss=loss, logits=out.logits, past_key_values=out.past_key_values,
                                                  hidden_states=out.hidden_states, attentions=out.attentions,
                                                  attention_mask=attention_mask)
        return result if return_dict else result.to_tuple()

    # --- generation ------------------------------------------------------------------------------------
    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, **kwargs: Any):
        """4.45's generate() with `input_features`/`feature_attention_mask`: the audio is merged into the prompt
        once; the output is the prompt ids followed by the new tokens; lengths count the prompt ids."""
        from .generation_qwen2_audio import generate_with_audio
        return generate_with_audio(self, inputs, generation_config, **kwargs)


def _loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Next-token cross-entropy over the positions the mask keeps (4.45's Qwen2-Audio loss)."""
    shift_logits, shift_labels = logits[:, :-1, :], labels[:, 1:].to(logits.device)
    if attention_mask is not None:
        keep = attention_mask[:, 1:].to(logits.device) != 0
        shift_logits, shift_labels = shift_logits[keep], shift_labels[keep]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1))
