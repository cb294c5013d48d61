"""GenerationMixin.generate: merge and validate the config, prepare the prompt, build processors and
stopping criteria, then hand over to the decoding strategy the config selects (`strategies/`)."""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from ..cache import Cache, DynamicCache
from ..errors import GenerationError
from ..logging_utils import log_warning
from ..structured.generate_hooks import pop_structured_output, with_structured_output
from .cache_setup import prepare_generation_cache
from .configuration_utils import GenerationConfig
from .context import GenerationContext
from .logits_base import LogitsProcessorList
from .logits_builder import build_logits_processor
from .outputs import (GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput,  # noqa: F401 (4.45's path)
                      GenerateBeamOutput, GenerateDecoderOnlyOutput, GenerateEncoderDecoderOutput,
                      GenerateNonBeamOutput, GenerateOutput, Recorder)
from .prepare import (infer_attention_mask, merge_generation_config, prompt_inputs, resolve_lengths,
                      special_tokens)
from .sampling import TokenSampler
from .stopping_criteria import StoppingCriteriaList, build_stopping_criteria
from .strategies import refuse_when_compiled, run_strategy, validate_mode
from .strategies.token_healing import heal_tokens
from .transition_scores import compute_transition_scores

logger = logging.getLogger(__name__)


class GenerationMixin:
    """Adds `generate()` (and `compute_transition_scores`) to causal language models."""

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None,
                 logits_processor: LogitsProcessorList | None = None,
                 stopping_criteria: StoppingCriteriaList | None = None,
                 prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
                 synced_gpus: bool | None = None, assistant_model: Any = None, streamer: Any = None,
                 negative_prompt_ids: torch.Tensor | None = None,
                 negative_prompt_attention_mask: torch.Tensor | None = None, **kwargs: Any):
        """transformers 4.45's generate(); beyond it, assisted decoding takes batches and `generator=` takes a
        torch.Generator or one seed per row (see `sampling.py`)."""
        tokenizer, generator = kwargs.pop("tokenizer", None), kwargs.pop("generator", None)
        structured = pop_structured_output(kwargs)  # grammar=, response_format=
        config, model_kwargs, default_max, default_min = merge_generation_config(self, generation_config, kwargs)
        _validate_assistant(self, assistant_model)
        prompt = prompt_inputs(self, inputs, model_kwargs, config)
        eos, pad = special_tokens(config, prompt.device, prompt.has_user_mask)
        if not self.config.is_encoder_decoder:  # an encoder-decoder's decoder prompt is its start ids
            _warn_right_padding(prompt, pad)
        if config.token_healing:  # re-tokenized prompts: their mask is inferred from the pads below
            prompt.input_ids, prompt.attention_mask = heal_tokens(self, prompt.input_ids, tokenizer), None
        infer_attention_mask(prompt, pad, eos)
        if streamer is not None:
            refuse_when_compiled("streamer")  # before the streamer decodes, which Dynamo cannot trace
            streamer.put(prompt.input_ids.cpu())
        prompt_len = resolve_lengths(config, prompt, default_max, default_min)
        self.merge_prompt_media(prompt)  # multimodal prompts: lengths above count the ids only
        mode = config.get_generation_mode(assistant_model)
        if assistant_model is not None and config.cache_implementation is not None:
            log_warning(logger, "An assistant model is provided, using a dynamic cache instead of a cache of "
                        "type=%r.", config.cache_implementation)
            config.cache_implementation = None
        use_cache = True if prompt.inputs_embeds is not None and prompt_len == 0 else bool(config.use_cache)
        validate_mode(mode, config, prompt, streamer, use_cache)

        logits_processor = with_structured_output(structured, logits_processor, tokenizer, eos, mode,
                                                  prompt.batch_size, self.config.vocab_size)
        processors = build_logits_processor(
            config, prompt_len, eos, prompt.device, logits_processor, encoder_input_ids=self.encoder_prompt_ids(prompt.input_ids),
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn, model=self, negative_prompt_ids=negative_prompt_ids,
            negative_prompt_attention_mask=negative_prompt_attention_mask, use_cache=use_cache)
        criteria = build_stopping_criteria(config, stopping_criteria, eos_token_id=eos, tokenizer=tokenizer,
                                           max_position_embeddings=self.config.max_position_embeddings)
        user_cache = model_kwargs.get("past_key_values")
        if user_cache is None:  # 4.45's name for a state-space model's cache
            user_cache = model_kwargs.get("cache_params")
        embeds_extra = prompt.inputs_embeds.shape[1] if prompt.inputs_embeds is not None and prompt_len == 0 else 0
        cache = prepare_generation_cache(
            self, config, user_cache, use_cache,
            batch_size=prompt.batch_size * max(config.num_beams, config.num_return_sequences),
            max_length=config.max_length + embeds_extra)
        ctx = GenerationContext(
            model=self, config=config, processors=processors, criteria=criteria, eos=eos, pad=pad,
            recorder=Recorder(config), sampler=TokenSampler(generator, prompt.batch_size, prompt.device),
            streamer=streamer, user_processors=logits_processor or LogitsProcessorList(),
            assistant_model=assistant_model, model_kwargs=model_kwargs)
        result = run_strategy(mode, ctx, prompt, cache)
        if streamer is not None:
            streamer.end()
        if not config.return_dict_in_generate:
            return result.sequences
        result.past_key_values = _returned_cache(self, result.past_key_values, config, user_cache)
        return result

    def make_generation_cache(self, batch_size: int, max_length: int, device: torch.device,
                              dtype: torch.dtype) -> Cache:
        """The cache generate() decodes with when the call names none (no `past_key_values`/`cache_params`,
        no `cache_implementation`); also an assistant model's cache. Default: an empty DynamicCache.

        A family whose layers keep a running state overrides it and returns its state cache (a `Cache`
        subclass with `recurrent = True`) for `batch_size` rows on `device` in `dtype`; `max_length` is the
        longest sequence the call reaches (for caches that preallocate). Such a cache must implement
        `get_seq_length` (positions fed, counted on the host), `reset`, `reorder_cache` (beams, in place),
        `batch_select_indices`, `batch_repeat_interleave`, `snapshot`/`restore`, and `checkpoint`/`rewind`
        (assisted decoding rolls back to the newest checkpoint and feeds the rest again). The model's
        forward takes it as `past_key_values` (generate()'s name) and as 4.45's own argument name, starts
        from its state, and advances its counter by the positions fed. cache_implementation="mamba" then
        names this cache; any other cache_implementation is ignored with a warning (as 4.45)."""
        return DynamicCache()

    def encoder_prompt_ids(self, prompt_ids: torch.Tensor) -> torch.Tensor | None:
        """The ids the `encoder_*` logits processors read: the prompt for decoder-only models (an
        encoder-decoder model's generate returns its encoder input instead)."""
        return prompt_ids

    def merge_prompt_media(self, prompt: Any) -> None:
        """Hook for multimodal models (Qwen2-Audio): put the media into the prompt after its lengths are
        fixed from the ids, by setting `prompt.inputs_embeds` (as long as the merged sequence) and its
        `attention_mask`; a longer prompt then decodes as an embeds prompt (the output holds the new tokens
        only). Default: no media."""

    def needs_cache_refill(self, cached_length: int, total_length: int) -> bool:
        """Whether generate() must empty the cache (holding `cached_length` positions) and feed all
        `total_length` positions again before the next step: True where cached keys go stale as the sequence
        grows (Phi3's longrope factors switch past the trained length). Host integers only: no device sync."""
        return False

    def compute_transition_scores(self, sequences: torch.Tensor, scores: tuple[torch.Tensor, ...],
                                  beam_indices: torch.Tensor | None = None,
                                  normalize_logits: bool = False) -> torch.Tensor:
        """Scores [B, new tokens] of the chosen tokens (see `transition_scores.py`)."""
        return compute_transition_scores(sequences, scores, beam_indices, normalize_logits,
                                         vocab_size=self.config.vocab_size)

    def heal_tokens(self, input_ids: torch.LongTensor, tokenizer: Any = None) -> torch.LongTensor:
        """Each prompt with its tail token replaced by the best extension of it (token healing)."""
        return heal_tokens(self, input_ids, tokenizer)

    def generate_batch(self, inputs: list, generation_config: GenerationConfig | None = None,
                       progress_bar: bool = True, **kwargs: Any) -> list:
        """Many prompts (text, token ids or chats) at once on the serving engine (continuous batching, paged
        KV cache); results in input order. See `formers.serving.offline.generate_batch`."""
        from ..serving.offline import generate_batch
        return generate_batch(self, inputs, generation_config, progress_bar, **kwargs)


def _validate_assistant(model, assistant_model) -> None:
    if assistant_model is not None and model.config.vocab_size != assistant_model.config.vocab_size:
        raise GenerationError(
            f"generate(): the assistant model's vocab_size ({assistant_model.config.vocab_size}) differs from the "
            f"main model's ({model.config.vocab_size}); make sure both use the same tokenizer")


def _warn_right_padding(prompt, pad) -> None:
    if not torch.compiler.is_compiling() and pad is not None and prompt.batch_size > 1 and prompt.input_ids.shape[1] > 0 \
            and bool((prompt.input_ids[:, -1] == pad).any()):
        logger.warning("A decoder-only architecture is being used, but right-padding was detected! For correct "
                       "generation results, please set `padding_side='left'` when initializing the tokenizer.")


def _returned_cache(model, cache, config: GenerationConfig, user_cache):
    """As 4.45: the default cache goes back as legacy tuples unless `return_legacy_cache=False`."""
    if not isinstance(cache, DynamicCache) or config.return_legacy_cache is False:
        return cache  # caches without a legacy form (static, sliding, ...) come back as they are
    if config.return_legacy_cache or (user_cache is None and type(cache) is DynamicCache):
        return model.cache_to_legacy(cache)
    return cache
