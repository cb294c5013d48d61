"""Everything a decoding strategy needs besides the running batch, prepared once by generate()."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .logits_base import LogitsProcessorList
from .outputs import Recorder
from .sampling import TokenSampler
from .stopping_criteria import EosTokenCriteria, StoppingCriteriaList


@dataclass
class GenerationContext:
    model: Any
    config: Any                                # the call's private GenerationConfig (lengths resolved)
    processors: LogitsProcessorList
    criteria: StoppingCriteriaList
    eos: torch.Tensor | None                   # [n_eos] resolved EOS ids
    pad: torch.Tensor | None                   # scalar pad id
    recorder: Recorder
    sampler: TokenSampler
    streamer: Any = None
    user_processors: LogitsProcessorList = field(default_factory=LogitsProcessorList)
    assistant_model: Any = None
    model_kwargs: dict = field(default_factory=dict)

    @property
    def fill(self) -> torch.Tensor | int:
        """What finished rows (and unused columns) hold: the pad id, or 0 without one."""
        return self.pad if self.pad is not None else 0

    @property
    def pad_finished_rows(self) -> bool:
        """transformers pads rows that finished only when an EOS criterion is present."""
        return any(isinstance(c, EosTokenCriteria) for c in self.criteria)

    def stream(self, tokens: torch.Tensor) -> None:
        if self.streamer is not None:
            self.streamer.put(tokens.cpu())

    def sync_every(self, device: torch.device) -> int:
        """Steps between host checks of "all rows done": every step on CPU (free) or with a streamer."""
        return 1 if device.type == "cpu" or self.streamer is not None else 8
