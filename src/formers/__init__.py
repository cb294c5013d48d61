"""formers: transformers' generative-model API, smaller and faster.

Public names are imported lazily, so `import formers` stays cheap and a script that only needs a
tokenizer never builds a model class.
"""
from __future__ import annotations

import importlib
from typing import Any

from .models.registry import public_names

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # configuration and models
    "PretrainedConfig": "configuration_utils",
    "PreTrainedModel": "modeling_utils",
    "AutoConfig": "models.auto",
    "AutoModel": "models.auto",
    "AutoModelForCausalLM": "models.auto",
    "AutoModelForSeq2SeqLM": "models.auto",
    "AutoModelForSpeechSeq2Seq": "models.auto",
    "AutoTokenizer": "models.auto.tokenization_auto",
    "AutoFeatureExtractor": "models.auto.feature_extraction_auto", "BatchFeature": "feature_extraction_utils",
    "WhisperFeatureExtractor": "models.whisper", "WhisperProcessor": "models.whisper",
    "WhisperTokenizer": "models.whisper", "WhisperTokenizerFast": "models.whisper",
    "AutoProcessor": "models.auto.processing_auto",
    "TorchAoConfig": "quantization", "BitsAndBytesConfig": "quantization", "GPTQConfig": "quantization",
    "AwqConfig": "quantization", "QuantoConfig": "quantization", "HqqConfig": "quantization",
    "AqlmConfig": "quantization", "EetqConfig": "quantization", "FbgemmFp8Config": "quantization",
    "CompressedTensorsConfig": "quantization",
    # outputs and caches
    "CausalLMOutputWithPast": "modeling_outputs", "BaseModelOutputWithPast": "modeling_outputs",
    "Cache": "cache_utils", "DynamicCache": "cache_utils",
    "StaticCache": "cache_utils", "SlidingWindowCache": "cache_utils", "SinkCache": "cache_utils",
    "QuantizedCache": "cache_utils", "QuantoQuantizedCache": "cache_utils", "HQQQuantizedCache": "cache_utils",
    "OffloadedCache": "cache_utils", "OffloadedStaticCache": "cache_utils", "HybridCache": "cache_utils",
    "EncoderDecoderCache": "cache_utils", "MambaCache": "cache_utils", "CacheConfig": "cache_utils",
    "QuantizedCacheConfig": "cache_utils", "StaticCacheConfig": "cache_utils",
    "save_cache": "cache_utils", "load_cache": "cache_utils",
    # tokenization
    "PreTrainedTokenizerFast": "tokenization", "BatchEncoding": "tokenization",
    "LlamaTokenizer": "tokenization", "LlamaTokenizerFast": "tokenization",
    "CodeLlamaTokenizer": "tokenization", "CodeLlamaTokenizerFast": "tokenization",
    "GemmaTokenizer": "tokenization", "GemmaTokenizerFast": "tokenization",
    "GPT2Tokenizer": "tokenization", "GPT2TokenizerFast": "tokenization",
    "Qwen2Tokenizer": "tokenization", "Qwen2TokenizerFast": "tokenization",
    "T5TokenizerFast": "models.t5.tokenization_t5", "BartTokenizerFast": "models.bart.tokenization_bart",
    "MBartTokenizerFast": "models.mbart.tokenization_mbart", "MarianTokenizer": "models.marian.tokenization_marian",
    "NllbTokenizer": "models.m2m_100.tokenization_nllb", "NllbTokenizerFast": "models.m2m_100.tokenization_nllb",
    "T5Tokenizer": "models.t5.tokenization_t5", "MT5Tokenizer": "models.t5.tokenization_t5",
    "MT5TokenizerFast": "models.t5.tokenization_t5", "BartTokenizer": "models.bart.tokenization_bart",
    "MBartTokenizer": "models.mbart.tokenization_mbart", "M2M100Tokenizer": "models.m2m_100.tokenization_m2m_100",
    "MBart50TokenizerFast": "models.mbart50.tokenization_mbart50_fast",
    "MBart50Tokenizer": "models.mbart50.tokenization_mbart50_fast",
    # logging and utils (transformers.logging is transformers.utils.logging)
    "logging": "utils",
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
    "AsyncTextIteratorStreamer": "generation", "GenerationMode": "generation", "WatermarkingConfig": "generation",
    "TypicalLogitsWarper": "generation", "EpsilonLogitsWarper": "generation", "EtaLogitsWarper": "generation",
    "EncoderRepetitionPenaltyLogitsProcessor": "generation", "NoRepeatNGramLogitsProcessor": "generation",
    "EncoderNoRepeatNGramLogitsProcessor": "generation", "SequenceBiasLogitsProcessor": "generation",
    "NoBadWordsLogitsProcessor": "generation", "ForcedBOSTokenLogitsProcessor": "generation",
    "ForcedEOSTokenLogitsProcessor": "generation", "InfNanRemoveLogitsProcessor": "generation",
    "ExponentialDecayLengthPenalty": "generation", "LogitNormalization": "generation",
    "SuppressTokensLogitsProcessor": "generation", "SuppressTokensAtBeginLogitsProcessor": "generation",
    "HammingDiversityLogitsProcessor": "generation", "PrefixConstrainedLogitsProcessor": "generation",
    "ClassifierFreeGuidanceLogitsProcessor": "generation",
    "UnbatchedClassifierFreeGuidanceLogitsProcessor": "generation", "WatermarkLogitsProcessor": "generation",
    "WatermarkDetector": "generation", "StopStringCriteria": "generation",
    "BeamScorer": "generation", "BeamSearchScorer": "generation", "ConstrainedBeamSearchScorer": "generation",
    "Constraint": "generation", "PhrasalConstraint": "generation", "DisjunctiveConstraint": "generation",
    "ConstraintListState": "generation", "GenerateBeamDecoderOnlyOutput": "generation.outputs",
    "GenerateEncoderDecoderOutput": "generation.outputs", "GenerateBeamEncoderDecoderOutput": "generation.outputs",
    "set_seed": "trainer_utils",
    # training
    "Trainer": "trainer", "TrainingArguments": "training_args", "Seq2SeqTrainer": "trainer_seq2seq",
    "Seq2SeqTrainingArguments": "training_args_seq2seq", "EvalPrediction": "trainer_utils", "IntervalStrategy": "training_args",
    "TrainerState": "trainer_state", "TrainerCallback": "trainer_callback", "TrainerControl": "trainer_callback",
    "DataCollatorForLanguageModeling": "data", "DataCollatorForSeq2Seq": "data", "DataCollatorWithPadding": "data", "default_data_collator": "data",
    "get_scheduler": "optimization", "SchedulerType": "optimization",
    "get_constant_schedule": "optimization", "get_constant_schedule_with_warmup": "optimization",
    "get_linear_schedule_with_warmup": "optimization", "get_cosine_schedule_with_warmup": "optimization",
    "get_cosine_with_hard_restarts_schedule_with_warmup": "optimization",
    "get_polynomial_decay_schedule_with_warmup": "optimization", "get_inverse_sqrt_schedule": "optimization",
    "get_wsd_schedule": "optimization",
    # pipelines
    "pipeline": "pipelines", "Pipeline": "pipelines", "TextGenerationPipeline": "pipelines",
    "Text2TextGenerationPipeline": "pipelines", "SummarizationPipeline": "pipelines", "TranslationPipeline": "pipelines",
    "get_json_schema": "tokenization.json_schema",
    # agents (transformers 4.45's top-level agent names)
    **{name: "agents" for name in ("Agent", "CodeAgent", "HfApiEngine", "ManagedAgent", "PipelineTool", "ReactAgent",
                                    "ReactCodeAgent", "ReactJsonAgent", "Tool", "Toolbox", "ToolCollection",
                                    "TransformersEngine", "launch_gradio_demo", "load_tool", "stream_to_gradio",
                                    "tool")},
}

_EXPORTS.update(public_names())  # every model family's classes, from the one registry
__all__ = sorted(_EXPORTS)


_SUBMODULES = ("utils", "generation", "cache_utils", "models", "pipelines", "modeling_outputs")  # formers.utils...


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None and name in _SUBMODULES:
        return importlib.import_module(f"formers.{name}")
    if module is None:
        raise AttributeError(f"module 'formers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"formers.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
