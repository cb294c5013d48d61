"""Generation: configuration, logits processors, stopping criteria, beam scorers, constraints, watermarking,
streamers and outputs (transformers' names).

`GenerationMixin` (generate()) and the candidate generators of assisted decoding are served lazily
below, so importing this package does not pull in the decoding strategies.
"""
from __future__ import annotations

import importlib
from typing import Any

from .beam_constraints import Constraint, ConstraintListState, DisjunctiveConstraint, PhrasalConstraint
from .beam_search import BeamHypotheses, BeamScorer, BeamSearchScorer
from .configuration_utils import GenerationConfig, GenerationMode, WatermarkingConfig
from . import logits_process
from .constrained_scorer import ConstrainedBeamSearchScorer
from .logits_process import (
    ClassifierFreeGuidanceLogitsProcessor, EncoderNoRepeatNGramLogitsProcessor,
    EncoderRepetitionPenaltyLogitsProcessor, EpsilonLogitsWarper, EtaLogitsWarper, ExponentialDecayLengthPenalty,
    ForcedBOSTokenLogitsProcessor, ForcedEOSTokenLogitsProcessor, HammingDiversityLogitsProcessor,
    InfNanRemoveLogitsProcessor, LogitNormalization, LogitsProcessor, LogitsProcessorList, LogitsWarper,
    MinLengthLogitsProcessor, MinNewTokensLengthLogitsProcessor, MinPLogitsWarper, NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor, PrefixConstrainedLogitsProcessor, RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor, SuppressTokensAtBeginLogitsProcessor, SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper,
    UnbatchedClassifierFreeGuidanceLogitsProcessor, WatermarkLogitsProcessor, build_logits_processor,
)
from .outputs import (
    BeamSampleDecoderOnlyOutput, BeamSampleEncoderDecoderOutput, BeamSearchDecoderOnlyOutput,
    BeamSearchEncoderDecoderOutput, ContrastiveSearchDecoderOnlyOutput, ContrastiveSearchEncoderDecoderOutput,
    GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput, GenerateDecoderOnlyOutput,
    GenerateEncoderDecoderOutput, GreedySearchDecoderOnlyOutput, GreedySearchEncoderDecoderOutput,
    SampleDecoderOnlyOutput, SampleEncoderDecoderOutput,
)
from .stopping_criteria import (
    ConfidenceCriteria, EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria,
    StoppingCriteria, StoppingCriteriaList, StopStringCriteria, build_stopping_criteria, validate_stopping_criteria,
)
from .streamers import AsyncTextIteratorStreamer, BaseStreamer, TextIteratorStreamer, TextStreamer
from .watermarking import WatermarkDetector, WatermarkDetectorOutput

# name -> submodule, imported on first access
_LAZY = {
    "GenerationMixin": "utils",
    "CandidateGenerator": "strategies.candidates",
    "AssistedCandidateGenerator": "strategies.candidates",
    "PromptLookupCandidateGenerator": "strategies.candidates",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GenerationConfig", "GenerationMode", "WatermarkingConfig",
    *logits_process.__all__,
    "StoppingCriteria", "StoppingCriteriaList", "MaxLengthCriteria", "MaxTimeCriteria",
    "EosTokenCriteria", "StopStringCriteria", "ConfidenceCriteria", "build_stopping_criteria",
    "validate_stopping_criteria",
    "BeamScorer", "BeamSearchScorer", "ConstrainedBeamSearchScorer", "BeamHypotheses",
    "Constraint", "PhrasalConstraint", "DisjunctiveConstraint", "ConstraintListState",
    "WatermarkDetector", "WatermarkDetectorOutput",
    "GenerateDecoderOnlyOutput", "GenerateBeamDecoderOnlyOutput", "GenerateEncoderDecoderOutput",
    "GenerateBeamEncoderDecoderOutput", "GreedySearchDecoderOnlyOutput", "SampleDecoderOnlyOutput",
    "ContrastiveSearchDecoderOnlyOutput", "BeamSearchDecoderOnlyOutput", "BeamSampleDecoderOnlyOutput",
    "GreedySearchEncoderDecoderOutput", "SampleEncoderDecoderOutput", "ContrastiveSearchEncoderDecoderOutput",
    "BeamSearchEncoderDecoderOutput", "BeamSampleEncoderDecoderOutput",
    "BaseStreamer", "TextStreamer", "TextIteratorStreamer", "AsyncTextIteratorStreamer",
    *_LAZY,
]
