"""What generate() returns with `return_dict_in_generate=True`, and the recorder strategies fill.

Class names and fields are transformers 4.45's; the older per-strategy names are aliases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import torch

from ..modeling_outputs import ModelOutput


@dataclass(eq=False, repr=True)
class GenerateDecoderOnlyOutput(ModelOutput):
    """Greedy, sampling, contrastive, assisted and DoLa output of a decoder-only model."""

    sequences: torch.LongTensor | None = None
    scores: tuple[torch.FloatTensor, ...] | None = None
    logits: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    past_key_values: Any = None


@dataclass(eq=False, repr=True)
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    """Beam-search family output of a decoder-only model."""

    sequences: torch.LongTensor | None = None
    sequences_scores: torch.FloatTensor | None = None
    scores: tuple[torch.FloatTensor, ...] | None = None
    logits: tuple[torch.FloatTensor, ...] | None = None
    beam_indices: torch.LongTensor | None = None
    attentions: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    past_key_values: Any = None


@dataclass(eq=False, repr=True)
class GenerateEncoderDecoderOutput(ModelOutput):
    """Non-beam output of an encoder-decoder model (no such family in formers yet; kept for the API)."""

    sequences: torch.LongTensor | None = None
    scores: tuple[torch.FloatTensor, ...] | None = None
    logits: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    cross_attentions: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    decoder_hidden_states: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    past_key_values: Any = None


@dataclass(eq=False, repr=True)
class GenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam output of an encoder-decoder model (kept for the API)."""

    sequences: torch.LongTensor | None = None
    sequences_scores: torch.FloatTensor | None = None
    scores: tuple[torch.FloatTensor, ...] | None = None
    logits: tuple[torch.FloatTensor, ...] | None = None
    beam_indices: torch.LongTensor | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_attentions: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    cross_attentions: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    decoder_hidden_states: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    past_key_values: Any = None


GreedySearchDecoderOnlyOutput = SampleDecoderOnlyOutput = GenerateDecoderOnlyOutput
ContrastiveSearchDecoderOnlyOutput = GenerateDecoderOnlyOutput
BeamSearchDecoderOnlyOutput = BeamSampleDecoderOnlyOutput = GenerateBeamDecoderOnlyOutput
GreedySearchEncoderDecoderOutput = SampleEncoderDecoderOutput = GenerateEncoderDecoderOutput
ContrastiveSearchEncoderDecoderOutput = GenerateEncoderDecoderOutput
BeamSearchEncoderDecoderOutput = BeamSampleEncoderDecoderOutput = GenerateBeamEncoderDecoderOutput
GenerateNonBeamOutput = Union[GenerateDecoderOnlyOutput, GenerateEncoderDecoderOutput]
GenerateBeamOutput = Union[GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput]
GenerateOutput = Union[GenerateNonBeamOutput, GenerateBeamOutput]


class Recorder:
    """Collects the per-step outputs the config asks for (only with `return_dict_in_generate`)."""

    def __init__(self, config: Any):
        on = bool(config.return_dict_in_generate)
        self.scores: list | None = [] if on and config.output_scores else None
        self.logits: list | None = [] if on and config.output_logits else None
        self.attentions: list | None = [] if on and config.output_attentions else None
        self.hidden_states: list | None = [] if on and config.output_hidden_states else None

    def add(self, scores: torch.Tensor | None = None, logits: torch.Tensor | None = None, out: Any = None) -> None:
        """Record one step: processed scores [N, V], raw logits [N, V] and the model output's extras."""
        if self.scores is not None and scores is not None:
            self.scores.append(scores)
        if self.logits is not None and logits is not None:
            self.logits.append(logits)
        if out is not None:
            if self.attentions is not None:
                self.attentions.append(out.attentions)
            if self.hidden_states is not None:
                self.hidden_states.append(out.hidden_states)

    def scores_so_far(self) -> tuple | None:
        """What transformers passes stopping criteria as `scores`: the recorded tuple, or None."""
        return tuple(self.scores) if self.scores is not None else None

    @staticmethod
    def _tuple(values: list | None) -> tuple | None:
        return tuple(values) if values is not None else None

    def decoder_only(self, sequences: torch.Tensor, past_key_values: Any) -> GenerateDecoderOnlyOutput:
        return GenerateDecoderOnlyOutput(
            sequences=sequences, scores=self._tuple(self.scores), logits=self._tuple(self.logits),
            attentions=self._tuple(self.attentions), hidden_states=self._tuple(self.hidden_states),
            past_key_values=past_key_values)

    def beam(self, sequences: torch.Tensor, sequences_scores: torch.Tensor | None,
             beam_indices: torch.Tensor | None, past_key_values: Any) -> GenerateBeamDecoderOnlyOutput:
        return GenerateBeamDecoderOnlyOutput(
            sequences=sequences, sequences_scores=sequences_scores, scores=self._tuple(self.scores),
            logits=self._tuple(self.logits), beam_indices=beam_indices, attentions=self._tuple(self.attentions),
            hidden_states=self._tuple(self.hidden_states), past_key_values=past_key_values)
