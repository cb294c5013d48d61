"""Offline batches on the serving engine: `model.generate_batch(inputs, ...)` (later transformers' name).

Each input is a prompt string, a list of token ids, or a chat (a list of {"role", "content"} messages,
rendered with the tokenizer's chat template and a generation prompt). Settings come, in rising
priority, from the generation config (the model's unless given: do_sample=False means greedy, and its
top_k/top_p/temperature/repetition_penalty/max_new_tokens/eos apply as in generate()), then per-call
keyword arguments (SamplingParams fields such as `grammar`, `response_format` as generate() takes it,
or max_new_tokens / do_sample), then `sampling_params`: one
SamplingParams for all inputs or one per input. Results come back in input order.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ServingError
from .engine import EngineConfig, LLMEngine
from .params import SamplingParams
from .sampler import TokenLogprob

_PARAM_FIELDS = {f.name for f in fields(SamplingParams)}
# generation-config settings the engine cannot honour: (field, value generate() uses when it is off)
_UNSUPPORTED = (("num_beams", 1), ("num_beam_groups", 1), ("penalty_alpha", None), ("typical_p", 1.0),
                ("epsilon_cutoff", 0.0), ("eta_cutoff", 0.0), ("no_repeat_ngram_size", 0), ("bad_words_ids", None),
                ("min_new_tokens", None), ("sequence_bias", None), ("guidance_scale", None))


@dataclass
class CompletionOutput:
    """One finished continuation of one input."""

    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str | None
    cached_prompt_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None
    index: int = 0


@dataclass
class _Collector:
    prompt: list[int]
    outputs: dict[int, CompletionOutput] = field(default_factory=dict)


def params_from_generation_config(config: Any, prompt_len: int) -> dict[str, Any]:
    """SamplingParams fields equivalent to `config` (a GenerationConfig) for a prompt of `prompt_len` tokens."""
    for name, off in _UNSUPPORTED:
        value = getattr(config, name, off)
        if value is not None and value != off:
            raise ServingError(f"generate_batch: generation_config.{name}={value!r} is not supported by the "
                               "serving engine (greedy search and sampling only)")
    if config.max_new_tokens is not None:
        max_tokens = config.max_new_tokens
    else:
        max_tokens = max(1, config.max_length - prompt_len)
    eos = config.eos_token_id
    eos = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
    values: dict[str, Any] = {"max_tokens": max_tokens, "stop_token_ids": [int(e) for e in eos], "ignore_eos": True,
                              "n": config.num_return_sequences or 1}
    if config.do_sample:
        values.update(temperature=float(config.temperature if config.temperature is not None else 1.0),
                      top_k=int(config.top_k or 0), top_p=float(config.top_p if config.top_p is not None else 1.0),
                      min_p=float(config.min_p or 0.0))
    else:
        values["temperature"] = 0.0
    if config.repetition_penalty is not None:
        values["repetition_penalty"] = float(config.repetition_penalty)
    if config.stop_strings:
        values["stop"] = [config.stop_strings] if isinstance(config.stop_strings, str) else list(config.stop_strings)
    return values


def _prompt_ids(item: Any, tokenizer: Any, position: int) -> list[int]:
    if isinstance(item, (list, tuple)) and all(isinstance(t, int) for t in item):
        return list(item)
    if tokenizer is None:
        raise ServingError(f"generate_batch: inputs[{position}] is text or a chat, which needs `tokenizer=`")
    if isinstance(item, str):
        return list(tokenizer(item)["input_ids"])
    if isinstance(item, (list, tuple)) and all(isinstance(m, dict) for m in item):
        return list(tokenizer.apply_chat_template(list(item), add_generation_prompt=True, tokenize=True))
    raise ServingError(f"generate_batch: inputs[{position}] must be a string, a list of token ids or a chat "
                       f"(list of message dicts), got {type(item).__name__}")


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-call keyword arguments -> (SamplingParams overrides, GenerationConfig overrides)."""
    params, config = {}, {}
    for name, value in kwargs.items():
        if name == "response_format":  # generate()'s spelling of a grammar
            name = "grammar"
        (params if name in _PARAM_FIELDS else config)[name] = value
    return params, config


def generate_batch(model, inputs: Sequence[Any], generation_config: Any = None, progress_bar: bool = True, *,
                   tokenizer: Any = None, sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
                   engine_config: EngineConfig | None = None, **kwargs: Any) -> list:
    """Run every input to completion on one LLMEngine; returns, per input, a CompletionOutput (a list of
    them when n > 1)."""
    from tqdm.auto import tqdm

    param_kwargs, config_kwargs = _split_kwargs(kwargs)
    config = copy.deepcopy(generation_config if generation_config is not None else model.generation_config)
    unused = config.update(**config_kwargs)
    if unused:
        raise ServingError(f"generate_batch: unknown settings {sorted(unused)} (neither SamplingParams nor "
                           "GenerationConfig fields)")
    if isinstance(sampling_params, SamplingParams) or sampling_params is None:
        per_item = [sampling_params] * len(inputs)
    elif len(sampling_params) != len(inputs):
        raise ServingError(f"generate_batch: {len(sampling_params)} sampling_params for {len(inputs)} inputs")
    else:
        per_item = list(sampling_params)
    engine = LLMEngine(model, tokenizer, engine_config or EngineConfig(max_waiting=max(1024, len(inputs) * 64)))
    collectors, total = [], 0
    for position, (item, given) in enumerate(zip(inputs, per_item)):
        prompt = _prompt_ids(item, tokenizer, position)
        params = given or SamplingParams(**{**params_from_generation_config(config, len(prompt)), **param_kwargs})
        engine.add_request(str(position), prompt, params)
        collectors.append(_Collector(prompt))
        total += params.n
    bar = tqdm(total=total, disable=not progress_bar, desc="generate_batch", dynamic_ncols=True)
    logprobs: dict[tuple[str, int], list[TokenLogprob]] = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.new_logprobs:
                logprobs.setdefault((out.request_id, out.index), []).extend(out.new_logprobs)
            if out.finished:
                collectors[int(out.request_id)].outputs[out.index] = CompletionOutput(
                    collectors[int(out.request_id)].prompt, out.token_ids, out.text, out.finish_reason,
                    out.cached_prompt_tokens, logprobs.pop((out.request_id, out.index), None), out.index)
                bar.update(1)
    bar.close()
    return [c.outputs[0] if len(c.outputs) == 1 else [c.outputs[i] for i in sorted(c.outputs)] for c in collectors]
