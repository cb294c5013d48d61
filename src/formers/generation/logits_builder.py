"""Build the LogitsProcessorList a GenerationConfig asks for, in transformers 4.45's order.

The order is a table: each row names the config field it serves, when it applies and how to build it.
Rows for features formers does not implement raise GenerationError naming the field rather than
silently ignoring it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import GenerationError
from .logits_base import LogitsProcessorList, as_id_tensor


@dataclass
class _BuildContext:
    config: Any
    input_len: int
    eos: torch.Tensor | None
    device: torch.device | str
    encoder_input_ids: torch.Tensor | None
    prefix_allowed_tokens_fn: Callable | None
    model: Any = None
    negative_prompt_ids: torch.Tensor | None = None
    negative_prompt_attention_mask: torch.Tensor | None = None
    use_cache: bool = True

    def need_eos(self, field: str) -> torch.Tensor:
        if self.eos is None:
            raise GenerationError(f"`{field}` needs an EOS token id, but `eos_token_id` is not set")
        return self.eos

    def need_encoder_ids(self, field: str) -> torch.Tensor:
        if self.encoder_input_ids is None:
            raise GenerationError(f"`{field}` needs `encoder_input_ids` (the prompt ids for decoder-only models), "
                                  "but none were given to build_logits_processor")
        return self.encoder_input_ids


    def need_model(self, field: str) -> Any:
        if self.model is None:
            raise GenerationError(f"`{field}` needs the model (pass `model=` to build_logits_processor)")
        return self.model


def _unsupported(field: str, why: str) -> Callable[[_BuildContext], Any]:
    def build(ctx: _BuildContext) -> Any:
        raise GenerationError(f"`{field}` is set ({getattr(ctx.config, field)!r}) but {why}")
    return build


def _begin_suppress(ctx: _BuildContext) -> lp.LogitsProcessor:
    cfg = ctx.config
    # with a forced BOS as the first generated token, suppression starts one step later
    begin = ctx.input_len if (ctx.input_len > 1 or cfg.forced_bos_token_id is None) else ctx.input_len + 1
    return lp.SuppressTokensAtBeginLogitsProcessor(cfg.begin_suppress_tokens, begin, device=ctx.device)


def _watermark(ctx: _BuildContext) -> lp.LogitsProcessor:
    wm = ctx.config.watermarking_config
    return lp.WatermarkLogitsProcessor(
        vocab_size=ctx.need_model("watermarking_config").config.vocab_size, device=ctx.device,
        greenlist_ratio=wm.greenlist_ratio, bias=wm.bias, hashing_key=wm.hashing_key,
        seeding_scheme=wm.seeding_scheme, context_width=wm.context_width)


def _is_set(value: Any) -> bool:
    return value is not None


Row = tuple[str, Callable[[Any, _BuildContext], bool], Callable[[_BuildContext], Any]]

# (field, applies?, build) in the order transformers 4.45 appends processors
_PROCESSORS: list[Row] = [
    ("guidance_scale", lambda c, x: c.guidance_scale is not None and c.guidance_scale != 1,
     lambda x: lp.UnbatchedClassifierFreeGuidanceLogitsProcessor(
         x.config.guidance_scale, x.need_model("guidance_scale"), unconditional_ids=x.negative_prompt_ids,
         unconditional_attention_mask=x.negative_prompt_attention_mask, use_cache=x.use_cache)),
    ("sequence_bias", lambda c, x: c.sequence_bias is not None,
     lambda x: lp.SequenceBiasLogitsProcessor(sequence_bias=x.config.sequence_bias)),
    ("diversity_penalty", lambda c, x: c.diversity_penalty is not None and c.diversity_penalty > 0.0,
     lambda x: lp.HammingDiversityLogitsProcessor(diversity_penalty=x.config.diversity_penalty,
                                                  num_beams=x.config.num_beams,
                                                  num_beam_groups=x.config.num_beam_groups)),
    ("encoder_repetition_penalty",
     lambda c, x: c.encoder_repetition_penalty is not None and c.encoder_repetition_penalty != 1.0,
     lambda x: lp.EncoderRepetitionPenaltyLogitsProcessor(
         penalty=x.config.encoder_repetition_penalty,
         encoder_input_ids=x.need_encoder_ids("encoder_repetition_penalty"))),
    ("repetition_penalty", lambda c, x: c.repetition_penalty is not None and c.repetition_penalty != 1.0,
     lambda x: lp.RepetitionPenaltyLogitsProcessor(penalty=x.config.repetition_penalty)),
    ("no_repeat_ngram_size", lambda c, x: c.no_repeat_ngram_size is not None and c.no_repeat_ngram_size > 0,
     lambda x: lp.NoRepeatNGramLogitsProcessor(x.config.no_repeat_ngram_size)),
    ("encoder_no_repeat_ngram_size",
     lambda c, x: c.encoder_no_repeat_ngram_size is not None and c.encoder_no_repeat_ngram_size > 0,
     lambda x: lp.EncoderNoRepeatNGramLogitsProcessor(
         x.config.encoder_no_repeat_ngram_size, x.need_encoder_ids("encoder_no_repeat_ngram_size"))),
    ("bad_words_ids", lambda c, x: c.bad_words_ids is not None,
     lambda x: lp.NoBadWordsLogitsProcessor(x.config.bad_words_ids, x.eos)),
    ("min_length", lambda c, x: c.min_length is not None and x.eos is not None and c.min_length > 0,
     lambda x: lp.MinLengthLogitsProcessor(x.config.min_length, x.eos, device=x.device)),
    ("min_new_tokens", lambda c, x: c.min_new_tokens is not None and x.eos is not None and c.min_new_tokens > 0,
     lambda x: lp.MinNewTokensLengthLogitsProcessor(x.input_len, x.config.min_new_tokens, x.eos, device=x.device)),
    ("prefix_allowed_tokens_fn", lambda c, x: x.prefix_allowed_tokens_fn is not None,
     lambda x: lp.PrefixConstrainedLogitsProcessor(x.prefix_allowed_tokens_fn,
                                                   x.config.num_beams // x.config.num_beam_groups)),
    ("forced_bos_token_id", lambda c, x: c.forced_bos_token_id is not None,
     lambda x: lp.ForcedBOSTokenLogitsProcessor(x.config.forced_bos_token_id)),
    ("forced_eos_token_id", lambda c, x: c.forced_eos_token_id is not None,
     lambda x: lp.ForcedEOSTokenLogitsProcessor(x.config.max_length, x.config.forced_eos_token_id,
                                                device=x.device)),
    ("remove_invalid_values", lambda c, x: c.remove_invalid_values is True,
     lambda x: lp.InfNanRemoveLogitsProcessor()),
    ("exponential_decay_length_penalty", lambda c, x: c.exponential_decay_length_penalty is not None,
     lambda x: lp.ExponentialDecayLengthPenalty(x.config.exponential_decay_length_penalty,
                                                x.need_eos("exponential_decay_length_penalty"), x.input_len)),
    ("suppress_tokens", lambda c, x: c.suppress_tokens is not None,
     lambda x: lp.SuppressTokensLogitsProcessor(x.config.suppress_tokens, device=x.device)),
    ("begin_suppress_tokens", lambda c, x: c.begin_suppress_tokens is not None, _begin_suppress),
    ("forced_decoder_ids", lambda c, x: c.forced_decoder_ids is not None,
     _unsupported("forced_decoder_ids", "it is not supported (as in transformers 4.45): pass the forced ids as "
                  "`input_ids` / `decoder_input_ids` instead")),
    ("watermarking_config", lambda c, x: c.watermarking_config is not None, _watermark),
]


def _min_tokens_to_keep(config: Any, eos: torch.Tensor | None) -> int:
    """Beam methods keep every EOS id plus one more token, so continuations stay explorable."""
    if config.num_beams is None or config.num_beams <= 1:
        return 1
    return 2 if eos is None else eos.reshape(-1).shape[0] + 1


# Warpers (applied only when sampling), in transformers 4.45's order; `k` is min_tokens_to_keep.
_WARPERS: list[tuple[str, Callable[[Any], bool], Callable[[_BuildContext, int], Any]]] = [
    ("temperature", lambda c: c.temperature is not None and c.temperature != 1.0,
     lambda x, k: lp.TemperatureLogitsWarper(x.config.temperature)),
    ("top_k", lambda c: c.top_k is not None and c.top_k != 0,
     lambda x, k: lp.TopKLogitsWarper(top_k=x.config.top_k, min_tokens_to_keep=k)),
    ("top_p", lambda c: c.top_p is not None and c.top_p < 1.0,
     lambda x, k: lp.TopPLogitsWarper(top_p=x.config.top_p, min_tokens_to_keep=k)),
    ("min_p", lambda c: c.min_p is not None,
     lambda x, k: lp.MinPLogitsWarper(min_p=x.config.min_p, min_tokens_to_keep=k)),
    ("typical_p", lambda c: c.typical_p is not None and c.typical_p < 1.0,
     lambda x, k: lp.TypicalLogitsWarper(mass=x.config.typical_p, min_tokens_to_keep=k)),
    ("epsilon_cutoff", lambda c: c.epsilon_cutoff is not None and 0.0 < c.epsilon_cutoff < 1.0,
     lambda x, k: lp.EpsilonLogitsWarper(epsilon=x.config.epsilon_cutoff, min_tokens_to_keep=k)),
    ("eta_cutoff", lambda c: c.eta_cutoff is not None and 0.0 < c.eta_cutoff < 1.0,
     lambda x, k: lp.EtaLogitsWarper(epsilon=x.config.eta_cutoff, min_tokens_to_keep=k, device=x.device)),
]


def merge_user_list(built: list, user: list | None, kind: str = "logits processor") -> list:
    """Append user processors/criteria after the built ones; a user one of a built type is an error."""
    if not user:
        return built
    for default in built:
        for custom in user:
            if type(custom) is type(default):
                raise GenerationError(
                    f"A custom {kind} of type {type(custom).__name__} was passed to generate(), but one was "
                    f"already created from the generation config ({default}). Set the corresponding "
                    f"generate()/GenerationConfig argument instead of passing a custom {kind}.")
    built.extend(user)
    return built


def build_logits_processor(
    generation_config: Any,
    input_ids_seq_length: int,
    eos_token_id: torch.Tensor | int | list[int] | None,
    device: torch.device | str | None,
    user_processors: LogitsProcessorList | None = None,
    *,
    encoder_input_ids: torch.Tensor | None = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    model: Any = None,
    negative_prompt_ids: torch.Tensor | None = None,
    negative_prompt_attention_mask: torch.Tensor | None = None,
    use_cache: bool = True,
) -> LogitsProcessorList:
    """The processors (then user processors, then sampling warpers, then normalization) a config asks for.

    `eos_token_id` is the resolved EOS id tensor (transformers' `generation_config._eos_token_tensor`);
    `encoder_input_ids` is the prompt for decoder-only models (used by the `encoder_*` options); `model`
    (with the negative prompt) serves classifier-free guidance and watermarking (its vocab size).
    """
    eos = None if eos_token_id is None else as_id_tensor(eos_token_id, device)
    if device is None:
        device = eos.device if eos is not None else "cpu"
    ctx = _BuildContext(generation_config, input_ids_seq_length, eos, device, encoder_input_ids,
                        prefix_allowed_tokens_fn, model, negative_prompt_ids, negative_prompt_attention_mask,
                        use_cache)
    processors = LogitsProcessorList(
        build(ctx) for _, applies, build in _PROCESSORS if applies(generation_config, ctx))
    processors = merge_user_list(processors, user_processors)
    if generation_config.do_sample:
        keep = _min_tokens_to_keep(generation_config, eos)
        processors.extend(build(ctx, keep) for _, applies, build in _WARPERS if applies(generation_config))
    if generation_config.renormalize_logits is True:
        processors.append(lp.LogitNormalization())  # always last
    return processors


# Imported last: logits_process re-exports build_logits_processor, so either module may be imported first.
from . import logits_process as lp  # noqa: E402
