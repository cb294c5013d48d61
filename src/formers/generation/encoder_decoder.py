"""generate() for encoder-decoder models: run the encoder once, then decode with the shared strategies.

The strategies (greedy, sampling, beams, ...) drive a decoder-only model: ids in, logits out, one KV
cache. `DecoderView` presents an encoder-decoder model that way: its prompt is the decoder's start
ids, its forward is the decoder over the fixed encoder states (rows repeated to the strategy's row
count for beams and multiple return sequences, as 4.45 expands them), and its cache is an
`EncoderDecoderCache` whose cross-attention half is filled on the first step and reused after.
Steps follow 4.45's `_prepare_encoder_decoder_kwargs_for_generation` and
`_prepare_decoder_input_ids_for_generation`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GenerationError
from ..modeling_outputs import BaseModelOutput, ModelOutput
from .outputs import (
    GenerateBeamDecoderOnlyOutput,
    GenerateBeamEncoderDecoderOutput,
    GenerateDecoderOnlyOutput,
    GenerateEncoderDecoderOutput,
)
from .prepare import PromptInputs, infer_attention_mask
from .utils import GenerationMixin


@dataclass(eq=False, repr=True)
class DecoderStepOutput(ModelOutput):
    """One decoder step as the strategies read it (`attentions`/`hidden_states` are the decoder's)."""

    logits: torch.FloatTensor | None = None
    past_key_values: Any = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


class DecoderView(GenerationMixin):
    """An encoder-decoder model seen as a decoder-only one over fixed encoder states (see module doc)."""

    def __init__(self, model, encoder_hidden: torch.Tensor, encoder_mask: torch.Tensor | None,
                 encoder_input_ids: torch.Tensor | None = None):
        self.model, self.encoder_hidden, self.encoder_mask = model, encoder_hidden, encoder_mask
        self.encoder_input_ids = encoder_input_ids
        self.config, self.generation_config = model.config, model.generation_config
        self.cross_attentions: list[tuple[torch.Tensor, ...]] = []  # per model call, when attentions are asked

    def __getattr__(self, name: str):  # device, dtype, get_input_embeddings, ...
        return getattr(self.model, name)

    # GenerationMixin's own defaults would shadow the model's (plain attribute lookup finds them first)
    def make_generation_cache(self, batch_size: int, max_length: int, device, dtype):
        return self.model.make_generation_cache(batch_size, max_length, device, dtype)

    def needs_cache_refill(self, cached_length: int, total_length: int) -> bool:
        return self.model.needs_cache_refill(cached_length, total_length)

    def encoder_prompt_ids(self, prompt_ids: torch.Tensor) -> torch.Tensor | None:
        return self.encoder_input_ids  # encoder_no_repeat_ngram_size / encoder_repetition_penalty read these

    def _encoder_rows(self, rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder states and mask with each row repeated to `rows` (kept once expanded)."""
        batch = self.encoder_hidden.shape[0]
        if rows != batch:
            if rows % batch:
                raise GenerationError(f"generate(): {rows} decoder rows do not divide into {batch} encoder rows")
            self.encoder_hidden = self.encoder_hidden.repeat_interleave(rows // batch, dim=0)
            if self.encoder_mask is not None:
                self.encoder_mask = self.encoder_mask.repeat_interleave(rows // batch, dim=0)
        return self.encoder_hidden, self.encoder_mask

    def __call__(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None,
                 past_key_values=None, use_cache=None, cache_position=None, num_logits_to_keep: int = 0,
                 return_dict=True, output_attentions=False, output_hidden_states=False, **kwargs):
        rows = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        hidden, mask = self._encoder_rows(rows)
        out = self.model(attention_mask=mask, decoder_input_ids=input_ids, decoder_attention_mask=attention_mask,
                         encoder_outputs=BaseModelOutput(last_hidden_state=hidden), past_key_values=past_key_values,
                         decoder_inputs_embeds=inputs_embeds, use_cache=use_cache, cache_position=cache_position,
                         num_logits_to_keep=num_logits_to_keep, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, return_dict=True)
        if output_attentions:
            self.cross_attentions.append(out.cross_attentions)
        return DecoderStepOutput(logits=out.logits, past_key_values=out.past_key_values,
                                 hidden_states=out.decoder_hidden_states, attentions=out.decoder_attentions,
                                 cross_attentions=out.cross_attentions)


def _setting(config, kwargs: dict, name: str):
    return kwargs[name] if kwargs.get(name) is not None else getattr(config, name)


def encode_for_generation(model, inputs, config, kwargs: dict
                          ) -> tuple[BaseModelOutput, torch.Tensor | None, torch.Tensor | None]:
    """Run the encoder once (or take the caller's `encoder_outputs`) -> (outputs, encoder attention mask,
    encoder input ids or None)."""
    input_ids = kwargs.pop("input_ids", None)
    if inputs is not None and input_ids is not None:
        raise GenerationError("generate(): `inputs` and `input_ids` were both passed; pass one of them")
    input_ids = inputs if inputs is not None else input_ids
    inputs_embeds = kwargs.pop("inputs_embeds", None)
    mask = kwargs.pop("attention_mask", None)
    encoder_outputs = kwargs.pop("encoder_outputs", None)
    if input_ids is not None and encoder_outputs is None:  # 4.45's mask inference: pads mark padding
        pad = _setting(config, kwargs, "pad_token_id")
        eos = _setting(config, kwargs, "eos_token_id")
        pad = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)
        eos_t = torch.tensor(eos, device=input_ids.device).reshape(-1) if eos is not None else None
        pad_t = torch.tensor(pad, device=input_ids.device) if pad is not None else None
        prompt = PromptInputs(input_ids, None, mask, mask is not None)
        infer_attention_mask(prompt, pad_t, eos_t)
        mask = prompt.attention_mask
    if encoder_outputs is None:
        if input_ids is None and inputs_embeds is None:
            raise GenerationError("generate(): an encoder-decoder model needs `inputs`/`input_ids`, "
                                  "`inputs_embeds` or `encoder_outputs`")
        encoder_outputs = model.get_encoder()(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=mask,
            output_attentions=bool(_setting(config, kwargs, "output_attentions")),
            output_hidden_states=bool(_setting(config, kwargs, "output_hidden_states")), return_dict=True)
    elif not isinstance(encoder_outputs, BaseModelOutput):
        encoder_outputs = BaseModelOutput(*encoder_outputs)
    return encoder_outputs, mask, input_ids


def decoder_prompt(config, kwargs: dict, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's start ids [B, 1] (or the caller's `decoder_input_ids`, the start id put in front when
    no row begins with it) and their mask."""
    start = _setting(config, kwargs, "decoder_start_token_id")
    if start is None:
        start = _setting(config, kwargs, "bos_token_id")
    if start is None:
        raise GenerationError("generate(): `decoder_start_token_id` or `bos_token_id` has to be defined for "
                              "encoder-decoder generation")
    start_ids = torch.tensor(start, dtype=torch.long, device=device).reshape(-1, 1)
    start_ids = start_ids.expand(batch, 1) if start_ids.shape[0] == 1 else start_ids
    given = kwargs.pop("decoder_input_ids", None)
    given_mask = kwargs.pop("decoder_attention_mask", None)
    if given is None:
        return start_ids, torch.ones_like(start_ids)
    given = given.to(device)
    if bool((given[:, 0] != start_ids[:, 0]).all()):
        given = torch.cat([start_ids, given], dim=-1)
        if given_mask is not None:
            given_mask = torch.cat([torch.ones_like(start_ids), given_mask], dim=-1)
    return given, given_mask if given_mask is not None else torch.ones_like(given)


def generate_seq2seq(model, inputs: torch.Tensor | None, generation_config, **kwargs):
    """`generate()` of an encoder-decoder model (same arguments as the decoder-only one)."""
    config = generation_config if generation_config is not None else model.generation_config
    encoder_outputs, encoder_mask, encoder_ids = encode_for_generation(model, inputs, config, kwargs)
    hidden = encoder_outputs.last_hidden_state
    decoder_ids, decoder_mask = decoder_prompt(config, kwargs, hidden.shape[0], hidden.device)
    view = DecoderView(model, hidden, encoder_mask, encoder_ids)
    assistant = kwargs.get("assistant_model")
    if assistant is not None and assistant.config.is_encoder_decoder:  # drafts from its own encoder states
        if encoder_ids is None:
            raise GenerationError("generate(): an encoder-decoder assistant_model needs the encoder `input_ids`")
        drafted = assistant.get_encoder()(input_ids=encoder_ids, attention_mask=encoder_mask, return_dict=True)
        kwargs["assistant_model"] = DecoderView(assistant, drafted.last_hidden_state, encoder_mask, encoder_ids)
    result = GenerationMixin.generate(view, decoder_ids, generation_config, attention_mask=decoder_mask, **kwargs)
    if not isinstance(result, (GenerateDecoderOnlyOutput, GenerateBeamDecoderOnlyOutput)):
        return result
    common = {"sequences": result.sequences, "scores": result.scores, "logits": result.logits,
                  "encoder_attentions": encoder_outputs.attentions, "encoder_hidden_states": encoder_outputs.hidden_states,
                  "decoder_attentions": result.attentions, "cross_attentions": _cross_attentions(view, result.attentions),
                  "decoder_hidden_states": result.hidden_states, "past_key_values": result.past_key_values}
    if isinstance(result, GenerateBeamDecoderOnlyOutput):
        return GenerateBeamEncoderDecoderOutput(sequences_scores=result.sequences_scores,
                                                beam_indices=result.beam_indices, **common)
    return GenerateEncoderDecoderOutput(**common)


def _cross_attentions(view: DecoderView, decoder_attentions) -> tuple | None:
    """The cross-attention weights of each recorded step: one model call per step (greedy, sampling, beams;
    calls past the end that the loop trimmed are dropped). Strategies that call the model more often
    than they record (contrastive, assisted) report None."""
    if decoder_attentions is None or len(view.cross_attentions) < len(decoder_attentions):
        return None
    steps = len(decoder_attentions)
    if len(view.cross_attentions) > steps and view.cross_attentions[steps - 1] is None:
        return None
    return tuple(view.cross_attentions[:steps])
