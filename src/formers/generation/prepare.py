"""The named steps generate() runs before decoding: config merge, prompt tensors, special tokens, lengths.

Each follows transformers 4.45's rules (which inputs win, when a mask is inferred, how max/min lengths
are derived, which warnings fire) so a ported call behaves the same.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GenerationError
from ..logging_utils import log_warning, warn
from .configuration_utils import GenerationConfig

logger = logging.getLogger(__name__)

# Keyword arguments generate() forwards to the model (everything else must be a GenerationConfig field).
MODEL_KWARGS = frozenset({"attention_mask", "inputs_embeds", "past_key_values", "use_cache", "input_ids",
                          "num_logits_to_keep", "cache_params"})


@dataclass
class PromptInputs:
    input_ids: torch.Tensor               # [B, P] (P may be 0 for embeds-only prompts)
    inputs_embeds: torch.Tensor | None    # [B, P', C]
    attention_mask: torch.Tensor | None   # [B, P'] (None: no row is padded)
    has_user_mask: bool

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def device(self) -> torch.device:
        return self.input_ids.device


def merge_generation_config(model, generation_config: GenerationConfig | None, kwargs: dict[str, Any]):
    """A private copy of the config with generate()'s kwargs applied -> (config, model kwargs, default max?)."""
    base = generation_config if generation_config is not None else model.generation_config
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    has_default_max_length = kwargs.get("max_length") is None and config.max_length is not None
    has_default_min_length = kwargs.get("min_length") is None and config.min_length is not None
    model_kwargs = config.update(**kwargs)
    if generation_config is not None and model.generation_config is not None:  # ids the user's config lacks
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            if getattr(config, name) is None:
                setattr(config, name, getattr(model.generation_config, name))
    unused = sorted(key for key, value in model_kwargs.items() if value is not None and key not in MODEL_KWARGS)
    if unused:
        raise GenerationError(f"generate(): the following `model_kwargs` are not used by the model: {unused} "
                              "(note: typos in the generate arguments will also show up in this list)")
    return config, model_kwargs, has_default_max_length, has_default_min_length


def prompt_inputs(model, inputs: torch.Tensor | None, model_kwargs: dict, config: GenerationConfig) -> PromptInputs:
    """The prompt as ids (+ embeddings) and the user's attention mask, as transformers picks them."""
    input_ids = model_kwargs.pop("input_ids", None)
    if inputs is not None and input_ids is not None:
        raise GenerationError("generate(): `inputs` and `input_ids` were both passed; pass one of them")
    input_ids = inputs if inputs is not None else input_ids
    inputs_embeds = model_kwargs.pop("inputs_embeds", None)
    mask = model_kwargs.pop("attention_mask", None)
    if input_ids is None:
        batch = next((v.shape[0] for v in (inputs_embeds, mask) if isinstance(v, torch.Tensor)), 1)
        if inputs_embeds is not None:  # embeds only: the output holds just the new tokens, as in transformers
            input_ids = torch.empty((batch, 0), dtype=torch.long, device=inputs_embeds.device)
        elif config.bos_token_id is None:
            raise GenerationError("generate(): no input_ids or inputs_embeds given and no `bos_token_id` to start "
                                  "from; pass a prompt or set `bos_token_id`")
        else:
            input_ids = torch.full((batch, 1), config.bos_token_id, dtype=torch.long, device=model.device)
    if input_ids.dim() != 2:
        raise GenerationError(f"generate(): input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
    if mask is not None and mask.dim() != 2:
        raise GenerationError("generate(): `attention_mask` passed to `generate` must be 2D ([batch, length])")
    return PromptInputs(input_ids, inputs_embeds, mask, has_user_mask=mask is not None)


def special_tokens(config: GenerationConfig, device: torch.device, has_user_mask: bool):
    """-> (eos ids [n] or None, pad id scalar or None); pad falls back to the first EOS id, with 4.45's warnings."""
    def as_tensor(token):
        if token is None:
            return None
        if isinstance(token, torch.Tensor):
            return token.to(device)
        return torch.tensor(token, dtype=torch.long, device=device)

    eos, pad = as_tensor(config.eos_token_id), as_tensor(config.pad_token_id)
    if eos is not None and eos.dim() == 0:
        eos = eos.unsqueeze(0)
    compiling = torch.compiler.is_compiling()  # no host reads, hence no messages built from tensors
    if pad is None and eos is not None:
        if not has_user_mask:
            log_warning(logger, "The attention mask and the pad token id were not set. Please pass your input's "
                        "`attention_mask` to obtain reliable results.")
        if not compiling:
            logger.warning("Setting `pad_token_id` to `eos_token_id`:%s for open-end generation.", eos[0].tolist())
        pad = eos[0]
    if not compiling and eos is not None and (torch.is_floating_point(eos) or bool((eos < 0).any())):
        logger.warning("`eos_token_id` should consist of positive integers, but is %s; generation will not stop "
                       "before the maximum length.", eos)
    return eos, pad


def infer_attention_mask(prompt: PromptInputs, pad, eos) -> None:
    """Without a user mask: pads mark padding only when they occur in the ids and differ from every EOS id.
    An all-ones mask is dropped (None), so the common unpadded case takes the plain causal path.
    While torch.compile traces, nothing is read back from the device: without a user mask, pads mark
    padding whenever the pad id is not an EOS id, and the mask is kept even when it is all ones."""
    if torch.compiler.is_compiling():
        if prompt.attention_mask is None and prompt.inputs_embeds is None and pad is not None:
            from_pads = prompt.input_ids.ne(pad).long()
            if eos is not None:  # a pad id that is also an EOS id marks nothing
                pad_is_eos = torch.isin(pad, eos).long()
                from_pads = from_pads * (1 - pad_is_eos) + pad_is_eos
            prompt.attention_mask = from_pads
        return
    if prompt.attention_mask is None and prompt.inputs_embeds is None and pad is not None \
            and prompt.input_ids.shape[1] > 0:
        pad_is_eos = eos is not None and bool(torch.isin(pad, eos))
        if not pad_is_eos and bool((prompt.input_ids == pad).any()):
            prompt.attention_mask = prompt.input_ids.ne(pad).long()
    if prompt.attention_mask is not None and bool(prompt.attention_mask.all()):
        prompt.attention_mask = None


def resolve_lengths(config: GenerationConfig, prompt: PromptInputs, has_default_max_length: bool,
                    has_default_min_length: bool) -> int:
    """Set config.max_length / min_length from the *_new_tokens fields; warn and refuse as 4.45. -> prompt length."""
    prompt_len = prompt.input_ids.shape[1]
    embeds_len = prompt.inputs_embeds.shape[1] if prompt.inputs_embeds is not None else prompt_len
    if config.max_new_tokens is not None:
        if not has_default_max_length and config.max_length is not None:
            log_warning(logger, "Both `max_new_tokens` (=%s) and `max_length` (=%s) seem to have been set. "
                        "`max_new_tokens` will take precedence.", config.max_new_tokens, config.max_length)
        config.max_length = config.max_new_tokens + prompt_len
    elif prompt.inputs_embeds is not None and prompt_len != embeds_len:
        config.max_length -= embeds_len
    if config.min_new_tokens is not None:
        if not has_default_min_length:
            log_warning(logger, "Both `min_new_tokens` (=%s) and `min_length` (=%s) seem to have been set. "
                        "`min_new_tokens` will take precedence.", config.min_new_tokens, config.min_length)
        config.min_length = config.min_new_tokens + prompt_len
    elif prompt.inputs_embeds is not None and prompt_len != embeds_len:
        config.min_length = max(config.min_length - embeds_len, 0)
    _check_lengths(config, prompt_len, has_default_max_length)
    return prompt_len


def _check_lengths(config: GenerationConfig, prompt_len: int, has_default_max_length: bool) -> None:
    if has_default_max_length and config.max_new_tokens is None and config.max_length == 20:
        warn("Using the model-agnostic default `max_length` (=20) to control the generation length. We "
             "recommend setting `max_new_tokens` to control the maximum length of the generation.",
             UserWarning, stacklevel=4)
    if prompt_len >= config.max_length:
        raise GenerationError(
            f"generate(): input length of input_ids is {prompt_len}, but `max_length` is set to {config.max_length}; "
            "increase `max_length` or, better, set `max_new_tokens`")
    suffix = (" Generation will stop at the defined maximum length. You should decrease the minimum length and/or "
              "increase the maximum length.")
    if config.min_length is not None and config.min_length > config.max_length:
        warn(f"Unfeasible length constraints: `min_length` ({config.min_length}) is larger than the maximum "
             f"possible length ({config.max_length})." + suffix, UserWarning, stacklevel=4)
    if config.min_new_tokens is not None and config.min_new_tokens + prompt_len > config.max_length:
        warn(f"Unfeasible length constraints: `min_new_tokens` ({config.min_new_tokens}), when added to the "
             f"prompt length ({prompt_len}), is larger than the maximum possible length "
             f"({config.max_length})." + suffix, UserWarning, stacklevel=4)
