"""Generation: configuration, logits processors, stopping criteria and streamers (transformers' names).

`GenerationMixin` (the generate() loop) lives in `.utils`; it is exposed lazily below so importing this
package does not pull in the models.
"""
from __future__ import annotations

from typing import Any

from .configuration_utils import GenerationConfig, GenerationMode, WatermarkingConfig
from .logits_process import (
    ClassifierFreeGuidanceLogitsProcessor, EncoderNoRepeatNGramLogitsProcessor,
    EncoderRepetitionPenaltyLogitsProcessor, EpsilonLogitsWarper, EtaLogitsWarper, ExponentialDecayLengthPenalty,
    ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor, HammingDiversityLogitsProcessor,
    InfNanRemoveLogitsProcessor, LogitNormalization, LogitsProcessor, LogitsProcessorList, LogitsWarper,
    MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor, MinPLogitsWarper, NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor, PrefixConstrainedLogitsProcessor, RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor, SuppressTokensAtBeginLogitsProcessor, SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper, build_logits_processor,
)
from .stopping_criteria import (
    EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria, StoppingCriteria, StoppingCriteriaList,
    build_stopping_criteria,
)
from .streamers import AsyncTextIteratorStreamer, BaseStreamer, TextIteratorStreamer, TextStreamer

# Names served lazily from `.utils` (the lead's generate loop): add more here as they appear there.
_LAZY_FROM_UTILS = ("GenerationMixin",)


def __getattr__(name: str) -> Any:
    if name in _LAZY_FROM_UTILS:
        from . import utils

        return getattr(utils, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GenerationConfig", "GenerationMode", "WatermarkingConfig",
    "LogitsProcessor", "LogitsWarper", "LogitsProcessorList", "build_logits_processor",
    "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper",
    "EpsilonLogitsWarper", "EtaLogitsWarper",
    "MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor", "RepetitionPenaltyLogitsProcessor",
    "EncoderRepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "EncoderNoRepeatNGramLogitsProcessor",
    "SequenceBiasLogitsProcessor", "NoBadWordsLogitsProcessor", "ForcedBOSTokenLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor", "InfNanRemoveLogitsProcessor", "ExponentialDecayLengthPenalty",
    "LogitNormalization", "SuppressTokensLogitsProcessor", "SuppressTokensAtBeginLogitsProcessor",
    "HammingDiversityLogitsProcessor", "PrefixConstrainedLogitsProcessor", "ClassifierFreeGuidanceLogitsProcessor",
    "StoppingCriteria", "StoppingCriteriaList", "MaxLengthCriteria", "MaxTimeCriteria", "EosTokenCriteria",
    "build_stopping_criteria",
    "BaseStreamer", "TextStreamer", "TextIteratorStreamer", "AsyncTextIteratorStreamer",
    *_LAZY_FROM_UTILS,
]
