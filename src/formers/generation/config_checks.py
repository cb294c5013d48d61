"""Checks behind `GenerationConfig.validate()`: field types, then the value rules of transformers 4.45.

Hard errors raise `ConfigError` (a ValueError) naming the field; advisory problems (a sampling flag set
while `do_sample=False`, a beam flag with `num_beams=1`, ...) are `UserWarning`s, as in transformers.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

from ..errors import ConfigError

logger = logging.getLogger(__name__)

# Cache implementations `cache_implementation` may name (transformers 4.45's list, plus "offloaded").
CACHE_IMPLEMENTATIONS = ("static", "offloaded_static", "sliding_window", "hybrid", "mamba", "quantized", "offloaded")
CACHE_IMPLEMENTATIONS_WITH_CONFIG = ("quantized", "static")
# Arguments of generate() that users sometimes put in the config by mistake.
GENERATE_ONLY_ARGUMENTS = (
    "logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "synced_gpus", "assistant_model",
    "streamer", "negative_prompt_ids", "negative_prompt_attention_mask",
)
EXTRA_OUTPUT_FLAGS = ("output_attentions", "output_hidden_states", "output_scores", "output_logits")


def _is_int(v: Any) -> bool:
    return isinstance(v, int)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float))


def _is_int_list(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v)


def _is_ids(v: Any) -> bool:  # one token id or several
    return _is_int(v) or _is_int_list(v)


def _is_str_or_str_list(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v))


def _is_list_of_int_lists(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(_is_int_list(x) for x in v)


# field -> (predicate, what was expected). None is accepted for every field.
_TYPE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (_is_int, "an integer") for name in (
        "max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams", "num_beam_groups", "top_k",
        "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "num_return_sequences", "num_assistant_tokens",
        "prompt_lookup_num_tokens", "max_matching_ngram_size", "pad_token_id", "bos_token_id",
        "forced_bos_token_id")},
    **{name: (_is_number, "a number") for name in (
        "max_time", "penalty_alpha", "temperature", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
        "diversity_penalty", "repetition_penalty", "encoder_repetition_penalty", "length_penalty",
        "guidance_scale", "assistant_confidence_threshold")},
    **{name: (_is_int, "a boolean") for name in (  # bool is an int subclass; 0/1 are tolerated like 4.45
        "do_sample", "use_cache", "renormalize_logits", "remove_invalid_values", "token_healing", "low_memory",
        "output_attentions", "output_hidden_states", "output_scores", "output_logits", "return_dict_in_generate",
        "return_legacy_cache", "is_assistant")},
    **{name: (_is_ids, "a token id or a list of token ids") for name in (
        "eos_token_id", "forced_eos_token_id", "decoder_start_token_id")},
    **{name: (_is_int_list, "a list of token ids") for name in ("suppress_tokens", "begin_suppress_tokens")},
    "bad_words_ids": (_is_list_of_int_lists, "a list of lists of token ids"),
    "force_words_ids": (lambda v: isinstance(v, (list, tuple)), "a list of lists of token ids"),
    "stop_strings": (_is_str_or_str_list, "a string or a list of strings"),
    "cache_implementation": (lambda v: isinstance(v, str), "a string"),
    "num_assistant_tokens_schedule": (lambda v: isinstance(v, str), "a string"),
    "dola_layers": (lambda v: isinstance(v, str) or _is_int_list(v), "'low', 'high' or a list of layer indices"),
    "exponential_decay_length_penalty": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(x) for x in v),
        "a pair (start_index, decay_factor)"),
    "sequence_bias": (lambda v: isinstance(v, (dict, list)), "a dict or a list of [token ids, bias] pairs"),
    "forced_decoder_ids": (lambda v: isinstance(v, (list, tuple)), "a list of [index, token id] pairs"),
    "generation_kwargs": (lambda v: isinstance(v, dict), "a dict"),
    "cache_config": (lambda v: not isinstance(v, (str, int, float, list, tuple)), "a dict"),
}


def check_field_types(cfg: Any) -> None:
    """Raise ConfigError naming the first field whose value has the wrong type."""
    for name, (ok, expected) in _TYPE_RULES.items():
        value = getattr(cfg, name, None)
        if value is not None and not ok(value):
            raise ConfigError(
                f"generation config field `{name}` must be {expected} (or null), got {value!r} "
                f"of type {type(value).__name__}"
            )


def check_values(cfg: Any, is_init: bool = False) -> None:
    """The value rules of transformers 4.45's `GenerationConfig.validate` (errors and warnings)."""
    if cfg.early_stopping not in (True, False, "never"):
        raise ConfigError(f"`early_stopping` must be a boolean or 'never', got {cfg.early_stopping!r}")
    if cfg.max_new_tokens is not None and cfg.max_new_tokens <= 0:
        raise ConfigError(f"`max_new_tokens` must be greater than 0, got {cfg.max_new_tokens}")
    if cfg.pad_token_id is not None and cfg.pad_token_id < 0:
        warnings.warn(f"`pad_token_id` should be positive but got {cfg.pad_token_id}; batched generation with "
                      "padding will fail. Set `generation_config.pad_token_id` explicitly.", UserWarning,
                      stacklevel=3)
    suffix = (" This was detected when initializing the generation config instance, which means the "
              "corresponding file may hold incorrect parameterization and should be fixed.") if is_init else ""
    _check_sampling_flags(cfg, suffix)
    _check_beam_flags(cfg, suffix)
    _check_return_sequences(cfg)
    _check_cache(cfg)
    if cfg.watermarking_config is not None:
        cfg.watermarking_config.validate()
    if cfg.return_dict_in_generate is not True:
        for flag in EXTRA_OUTPUT_FLAGS:
            if getattr(cfg, flag) is True:
                warnings.warn(f"`return_dict_in_generate` is not True, so `{flag}=True` is ignored. Set "
                              f"`return_dict_in_generate=True` to get `{flag}`.", UserWarning, stacklevel=3)
    for arg in GENERATE_ONLY_ARGUMENTS:
        if hasattr(cfg, arg):
            raise ConfigError(f"`{arg}` is not a GenerationConfig field: pass it to `generate()` (or a pipeline) "
                              "directly.")


def _warn_unused(flag: str, value: Any, why: str, suffix: str) -> None:
    warnings.warn(f"`{flag}` is set to `{value}`, but {why}.{suffix}", UserWarning, stacklevel=4)


def _check_sampling_flags(cfg: Any, suffix: str) -> None:
    if cfg.do_sample is not False:
        return
    why = ("`do_sample` is False and this flag is only used in sample-based generation modes; set "
           "`do_sample=True` or unset it")
    flagged = [
        ("temperature", cfg.temperature is not None and cfg.temperature != 1.0),
        ("top_p", cfg.top_p is not None and cfg.top_p != 1.0),
        ("min_p", cfg.min_p is not None),
        ("typical_p", cfg.typical_p is not None and cfg.typical_p != 1.0),
        ("top_k", cfg.top_k is not None and cfg.top_k != 50 and cfg.penalty_alpha is None),  # contrastive uses top_k
        ("epsilon_cutoff", cfg.epsilon_cutoff is not None and cfg.epsilon_cutoff != 0.0),
        ("eta_cutoff", cfg.eta_cutoff is not None and cfg.eta_cutoff != 0.0),
    ]
    for name, is_set in flagged:
        if is_set:
            _warn_unused(name, getattr(cfg, name), why, suffix)


def _check_beam_flags(cfg: Any, suffix: str) -> None:
    if cfg.num_beams is None:
        warnings.warn("`num_beams` is set to None - defaulting to 1.", UserWarning, stacklevel=4)
        cfg.num_beams = 1
    if cfg.num_beams == 1:
        why = ("`num_beams` is 1 and this flag is only used in beam-based generation modes; set `num_beams>1` or "
               "unset it")
        flagged = [
            ("early_stopping", cfg.early_stopping is not False),
            ("num_beam_groups", cfg.num_beam_groups is not None and cfg.num_beam_groups != 1),
            ("diversity_penalty", cfg.diversity_penalty is not None and cfg.diversity_penalty != 0.0),
            ("length_penalty", cfg.length_penalty is not None and cfg.length_penalty != 1.0),
            ("constraints", cfg.constraints is not None),
        ]
        for name, is_set in flagged:
            if is_set:
                _warn_unused(name, getattr(cfg, name), why, suffix)
        return
    if cfg.constraints is not None or cfg.force_words_ids is not None:
        for name, bad in (("do_sample", cfg.do_sample is True),
                          ("num_beam_groups", cfg.num_beam_groups is not None and cfg.num_beam_groups != 1)):
            if bad:
                raise ConfigError(
                    f"`constraints`/`force_words_ids` trigger constrained beam search, which is incompatible with "
                    f"`{name}={getattr(cfg, name)}`: unset one of them.{suffix}")
    if cfg.diversity_penalty != 0.0 or cfg.num_beam_groups != 1:
        prefix = ("`diversity_penalty` != 0.0 or `num_beam_groups` != 1 trigger group beam search, where ")
        if cfg.do_sample is True:
            raise ConfigError(prefix + "`do_sample` must be False")
        if cfg.num_beams % cfg.num_beam_groups != 0:
            raise ConfigError(prefix + f"`num_beams` ({cfg.num_beams}) must be divisible by `num_beam_groups` "
                              f"({cfg.num_beam_groups})")
        if cfg.diversity_penalty == 0.0:
            raise ConfigError(prefix + "`diversity_penalty` must be greater than 0.0 (else the groups are identical)")
    if cfg.dola_layers is not None and (cfg.repetition_penalty is None or cfg.repetition_penalty < 1.2):
        warnings.warn(f"`dola_layers` triggers DoLa decoding, but `repetition_penalty` is {cfg.repetition_penalty}, "
                      "which may induce repetition; DoLa recommends `repetition_penalty>=1.2`.", UserWarning,
                      stacklevel=4)


def _check_return_sequences(cfg: Any) -> None:
    if cfg.num_return_sequences == 1:
        return
    if cfg.num_beams == 1:
        if cfg.do_sample is False:
            raise ConfigError("greedy decoding without beam search supports only `num_return_sequences=1`, got "
                              f"{cfg.num_return_sequences}")
    elif cfg.num_return_sequences > cfg.num_beams:
        raise ConfigError(f"`num_return_sequences` ({cfg.num_return_sequences}) must be <= `num_beams` "
                          f"({cfg.num_beams})")


def _check_cache(cfg: Any) -> None:
    if cfg.cache_implementation is not None and cfg.cache_implementation not in CACHE_IMPLEMENTATIONS:
        raise ConfigError(f"invalid `cache_implementation` {cfg.cache_implementation!r}; expected one of "
                          f"{list(CACHE_IMPLEMENTATIONS)}")
    if cfg.cache_config is not None and cfg.cache_implementation not in CACHE_IMPLEMENTATIONS_WITH_CONFIG:
        raise ConfigError(f"`cache_config` is set but `cache_implementation` ({cfg.cache_implementation!r}) takes "
                          f"no config; use one of {list(CACHE_IMPLEMENTATIONS_WITH_CONFIG)}")
    if cfg.use_cache is False:
        for name in ("cache_implementation", "cache_config", "return_legacy_cache"):
            if getattr(cfg, name) is not None:
                logger.warning("`use_cache` is False, so `%s=%r` has no effect.", name, getattr(cfg, name))
