"""What generate() returns with `return_dict_in_generate=True`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..modeling_outputs import ModelOutput


@dataclass(eq=False, repr=True)
class GenerateDecoderOnlyOutput(ModelOutput):
    sequences: torch.LongTensor | None = None
    scores: tuple[torch.FloatTensor, ...] | None = None
    logits: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    hidden_states: tuple[tuple[torch.FloatTensor, ...], ...] | None = None
    past_key_values: Any = None


GreedySearchDecoderOnlyOutput = GenerateDecoderOnlyOutput
SampleDecoderOnlyOutput = GenerateDecoderOnlyOutput
