"""GenerationMixin.generate: merge and validate the config, prepare inputs, build processors and
stopping criteria, then run the decoding strategy the config selects."""
from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import torch

from ..cache import DynamicCache
from ..errors import GenerationError
from .decoding import DecodeState, decode
from .logits_process import build_logits_processor
from .stopping_criteria import EosTokenCriteria, build_stopping_criteria
from .cache_setup import prepare_generation_cache
from .configuration_utils import GenerationConfig
from .outputs import GenerateDecoderOnlyOutput

logger = logging.getLogger(__name__)

_MODEL_KWARGS = {"attention_mask", "inputs_embeds", "past_key_values", "use_cache", "input_ids"}


class GenerationMixin:
    """Adds `generate()` to causal language models."""

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, logits_processor=None,
                 stopping_criteria=None, prefix_allowed_tokens_fn=None, synced_gpus: bool | None = None,
                 assistant_model=None, streamer=None, negative_prompt_ids=None,
                 negative_prompt_attention_mask=None, **kwargs: Any):
        config, model_kwargs, has_default_max_length = self._merge_generation_config(generation_config, kwargs)
        unused = sorted(set(model_kwargs) - _MODEL_KWARGS)
        if unused:
            raise GenerationError(f"generate(): the following model_kwargs are not used by the model: {unused}")
        if prefix_allowed_tokens_fn is not None or assistant_model is not None or negative_prompt_ids is not None:
            raise GenerationError("generate(): prefix_allowed_tokens_fn, assistant_model and negative_prompt_ids "
                                  "are not supported yet by formers")
        mode = config.get_generation_mode(assistant_model)
        if mode.name not in ("GREEDY_SEARCH", "SAMPLE"):
            raise GenerationError(f"generate(): decoding mode {mode.value!r} is not supported yet by formers "
                                  f"(greedy search and sampling are)")

        input_ids, inputs_embeds, attention_mask = _prompt_tensors(self, inputs, model_kwargs, config)
        eos, pad = _special_token_tensors(config, input_ids.device, "attention_mask" in model_kwargs)
        if attention_mask is None and inputs_embeds is None:
            attention_mask = _infer_attention_mask(input_ids, pad, eos)
        if config.num_return_sequences > 1:
            input_ids, inputs_embeds, attention_mask = (
                t.repeat_interleave(config.num_return_sequences, dim=0) if t is not None else None
                for t in (input_ids, inputs_embeds, attention_mask))
        prompt_len = input_ids.shape[1]
        _set_lengths(config, prompt_len, inputs_embeds, has_default_max_length)

        processors = build_logits_processor(config, prompt_len, eos, input_ids.device, logits_processor,
                                            encoder_input_ids=input_ids)
        criteria = build_stopping_criteria(config, stopping_criteria, eos_token_id=eos,
                                           max_position_embeddings=self.config.max_position_embeddings)
        user_cache = model_kwargs.get("past_key_values")
        cache = prepare_generation_cache(self, config, user_cache, model_kwargs.get("use_cache"),
                                         batch_size=input_ids.shape[0], max_length=config.max_length)
        if attention_mask is not None and bool(attention_mask.all()):  # one check here, none per step
            attention_mask = None
        if streamer is not None:
            streamer.put(input_ids.cpu())
        state = DecodeState(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, cache=cache,
            max_length=config.max_length, pad_token_id=pad, do_sample=mode.name == "SAMPLE",
            pad_finished_rows=_has_eos_criterion(criteria), streamer=streamer,
            output_scores=config.output_scores, output_logits=bool(config.output_logits),
            output_attentions=config.output_attentions, output_hidden_states=config.output_hidden_states,
        )
        sequences = decode(self, state, processors, criteria)
        if streamer is not None:
            streamer.end()
        if not config.return_dict_in_generate:
            return sequences
        returned_cache = cache
        if cache is not None and config.return_legacy_cache is not False:
            if config.return_legacy_cache or (user_cache is None and type(cache) is DynamicCache):
                returned_cache = cache.to_legacy_cache()
        return GenerateDecoderOnlyOutput(
            sequences=sequences,
            scores=tuple(state.scores) if config.output_scores else None,
            logits=tuple(state.raw_logits) if config.output_logits else None,
            attentions=tuple(state.attentions) if config.output_attentions else None,
            hidden_states=tuple(state.hidden_states) if config.output_hidden_states else None,
            past_key_values=returned_cache,
        )

    def _merge_generation_config(self, generation_config, kwargs: dict[str, Any]):
        """A private copy of the config with generate()'s kwargs applied; the rest are model kwargs."""
        base = generation_config if generation_config is not None else self.generation_config
        config = copy.deepcopy(base) if base is not None else GenerationConfig()
        has_default_max_length = "max_length" not in kwargs and (
            generation_config is None or generation_config.max_length == GenerationConfig().max_length)
        model_kwargs = config.update(**kwargs)
        config.validate()
        return config, model_kwargs, has_default_max_length


def _prompt_tensors(model, inputs, model_kwargs, config):
    """-> (input_ids [B, P], inputs_embeds [B, P', C] or None, attention_mask [B, P'] or None)."""
    input_ids = model_kwargs.pop("input_ids", None)
    if inputs is not None and input_ids is not None:
        raise GenerationError("generate(): `inputs` and `input_ids` were both passed; pass one of them")
    input_ids = inputs if inputs is not None else input_ids
    inputs_embeds = model_kwargs.get("inputs_embeds")
    if input_ids is None and inputs_embeds is None:
        bos = config.bos_token_id
        if bos is None:
            raise GenerationError("generate(): no input_ids or inputs_embeds given and no bos_token_id to start from")
        input_ids = torch.full((1, 1), bos, dtype=torch.long, device=model.device)
    if input_ids is None:  # embeds only: the output holds just the new tokens, as transformers returns
        input_ids = torch.empty((inputs_embeds.shape[0], 0), dtype=torch.long, device=inputs_embeds.device)
    if input_ids.dim() != 2:
        raise GenerationError(f"generate(): input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
    return input_ids, inputs_embeds, model_kwargs.get("attention_mask")


def _special_token_tensors(config, device, has_attention_mask: bool):
    eos = config.eos_token_id
    eos = torch.tensor([eos] if isinstance(eos, int) else eos, dtype=torch.long, device=device) \
        if eos is not None else None
    pad = config.pad_token_id
    if pad is None and eos is not None:
        if not has_attention_mask:
            logger.warning("The attention mask and the pad token id were not set. Please pass your input's "
                           "`attention_mask` to obtain reliable results.")
        logger.warning("Setting `pad_token_id` to `eos_token_id`:%s for open-end generation.", int(eos[0]))
        pad = int(eos[0])
    pad = torch.tensor(pad, dtype=torch.long, device=device) if pad is not None else None
    return eos, pad


def _infer_attention_mask(input_ids, pad, eos) -> torch.Tensor | None:
    """As transformers: pads mark padding only when they occur and differ from every EOS id."""
    if pad is None or input_ids.shape[1] == 0:
        return None
    pad_is_eos = eos is not None and bool(torch.isin(pad, eos))
    if pad_is_eos or not bool((input_ids == pad).any()):
        return None
    return input_ids.ne(pad).long()


def _set_lengths(config, prompt_len: int, inputs_embeds, has_default_max_length: bool) -> None:
    if config.max_new_tokens is not None:
        config.max_length = config.max_new_tokens + prompt_len
    elif inputs_embeds is not None and prompt_len != inputs_embeds.shape[1]:
        config.max_length -= inputs_embeds.shape[1]
    if config.min_new_tokens is not None:
        config.min_length = config.min_new_tokens + prompt_len
    elif inputs_embeds is not None and prompt_len != inputs_embeds.shape[1]:
        config.min_length = max(config.min_length - inputs_embeds.shape[1], 0)
    if has_default_max_length and config.max_new_tokens is None and config.max_length == 20:
        warnings.warn("Using the model-agnostic default `max_length` (=20) to control the generation length. "
                      "We recommend setting `max_new_tokens` to control the maximum length of the generation.",
                      UserWarning)
    if prompt_len >= config.max_length:
        raise GenerationError(
            f"generate(): input length of input_ids is {prompt_len}, but `max_length` is set to "
            f"{config.max_length}; increase `max_length` or, better, set `max_new_tokens`")


def _has_eos_criterion(criteria) -> bool:
    return any(isinstance(c, EosTokenCriteria) for c in criteria)
