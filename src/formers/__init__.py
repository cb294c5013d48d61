"""formers: transformers' generative-model API, smaller and faster.

Public names are imported lazily, so `import formers` stays cheap and a script that only needs a
tokenizer never builds a model class.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # configuration and models
    "PretrainedConfig": "configuration_utils",
    "PreTrainedModel": "modeling_utils",
    "AutoConfig": "models.auto",
    "AutoModel": "models.auto",
    "AutoModelForCausalLM": "models.auto",
    "AutoTokenizer": "models.auto.tokenization_auto",
    "LlamaConfig": "models.llama", "LlamaModel": "models.llama", "LlamaForCausalLM": "models.llama",
    "MistralConfig": "models.mistral", "MistralModel": "models.mistral", "MistralForCausalLM": "models.mistral",
    "Qwen2Config": "models.qwen2", "Qwen2Model": "models.qwen2", "Qwen2ForCausalLM": "models.qwen2",
    # outputs and caches
    "CausalLMOutputWithPast": "modeling_outputs", "BaseModelOutputWithPast": "modeling_outputs",
    "Cache": "cache_utils", "DynamicCache": "cache_utils",
    # tokenization
    "PreTrainedTokenizerFast": "tokenization", "BatchEncoding": "tokenization",
    # generation
    "GenerationConfig": "generation", "GenerationMixin": "generation.utils",
    "GenerateDecoderOnlyOutput": "generation.outputs",
    "LogitsProcessor": "generation", "LogitsProcessorList": "generation", "LogitsWarper": "generation",
    "TemperatureLogitsWarper": "generation", "TopKLogitsWarper": "generation", "TopPLogitsWarper": "generation",
    "MinPLogitsWarper": "generation", "RepetitionPenaltyLogitsProcessor": "generation",
    "MinLengthLogitsProcessor": "generation", "MinNewTokensLengthLogitsProcessor": "generation",
    "StoppingCriteria": "generation", "StoppingCriteriaList": "generation", "MaxLengthCriteria": "generation",
    "MaxTimeCriteria": "generation", "EosTokenCriteria": "generation",
    "TextStreamer": "generation", "TextIteratorStreamer": "generation",
    "set_seed": "trainer_utils",
    "get_json_schema": "tokenization.json_schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'formers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"formers.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
