"""Seq2SeqTrainingArguments: TrainingArguments plus transformers 4.45's generation fields for evaluation.

`predict_with_generate` makes evaluate/predict decode with `generate`; `generation_max_length` and
`generation_num_beams` are the defaults of those calls; `generation_config` (a GenerationConfig, or a
folder / hub id holding generation_config.json) replaces the model's generation config when the
Seq2SeqTrainer is built.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .training_args import TrainingArguments


@dataclass
class Seq2SeqTrainingArguments(TrainingArguments):
    sortish_sampler: bool = False
    predict_with_generate: bool = False
    generation_max_length: int | None = None
    generation_num_beams: int | None = None
    generation_config: Any = None  # str | os.PathLike | GenerationConfig | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sortish_sampler:
            raise ConfigError("Seq2SeqTrainingArguments.sortish_sampler=True: formers has no sortish sampler "
                              "(it only ever applied to legacy Seq2SeqDataset objects); leave it False")
        for name in ("generation_max_length", "generation_num_beams"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"Seq2SeqTrainingArguments.{name}: expected a positive int or None, got {value!r}")
        from .generation import GenerationConfig
        config = self.generation_config
        if config is not None and not isinstance(config, (str, os.PathLike, GenerationConfig)):
            raise ConfigError("Seq2SeqTrainingArguments.generation_config: expected a GenerationConfig, a folder "
                              f"or a hub id, got {type(config).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """As TrainingArguments.to_dict, with a GenerationConfig written as its dict (JSON-serialisable)."""
        out = super().to_dict()
        from .generation import GenerationConfig
        if isinstance(out["generation_config"], GenerationConfig):
            out["generation_config"] = out["generation_config"].to_dict()
        return out


__all__ = ["Seq2SeqTrainingArguments"]
