"""Batch builders for the Trainer, with transformers' names: lists of examples -> dict of tensors.

`DataCollatorForLanguageModeling(mlm=False)` is the causal-LM one: pad the inputs and copy them to
`labels`, with padding positions set to -100 so the loss skips them (the model shifts labels itself).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import TokenizerError

IGNORE_INDEX = -100  # label value the loss skips


def _as_tensor(values: Sequence[Any]) -> torch.Tensor:
    if isinstance(values[0], torch.Tensor):
        return torch.stack(list(values))
    return torch.tensor(values)


def default_data_collator(features: list[Any], return_tensors: str = "pt") -> dict[str, torch.Tensor]:
    """Stack equal-length examples; `label` / `label_ids` become `labels` (transformers' naming)."""
    if return_tensors != "pt":
        raise TokenizerError(f"default_data_collator: return_tensors={return_tensors!r}; formers returns 'pt' only")
    if not isinstance(features[0], Mapping):
        features = [vars(f) for f in features]
    first = features[0]
    batch: dict[str, torch.Tensor] = {}
    for source in ("label", "label_ids"):
        if source in first and first[source] is not None:
            batch["labels"] = _as_tensor([f[source] for f in features])
    for key, value in first.items():
        if key in ("label", "label_ids") or value is None or isinstance(value, str):
            continue
        batch[key] = _as_tensor([f[key] for f in features])
    return batch


def _pad_sequences(examples: list[Any], tokenizer, pad_to_multiple_of: int | None) -> torch.Tensor:
    """Rows of token ids (lists or 1-D tensors) -> [B, T] padded on the tokenizer's padding side."""
    rows = [torch.as_tensor(e, dtype=torch.long) for e in examples]
    length = max(len(r) for r in rows)
    if pad_to_multiple_of is not None and length % pad_to_multiple_of:
        length += pad_to_multiple_of - length % pad_to_multiple_of
    if all(len(r) == length for r in rows):
        return torch.stack(rows)
    if tokenizer is None or tokenizer.pad_token_id is None:
        raise TokenizerError("DataCollatorForLanguageModeling: examples of different lengths need a tokenizer "
                             "with a pad_token (set tokenizer.pad_token)")
    out = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    for i, row in enumerate(rows):
        if tokenizer.padding_side == "left":
            out[i, length - len(row):] = row
        else:
            out[i, : len(row)] = row
    return out


@dataclass
class DataCollatorForLanguageModeling:
    """Causal-LM batches: padded `input_ids` / `attention_mask`, and `labels` = inputs with pads at -100.

    formers has no masked-LM models, so `mlm=True` (transformers' default) is refused: pass `mlm=False`.
    """

    tokenizer: Any
    mlm: bool = True
    mlm_probability: float = 0.15
    pad_to_multiple_of: int | None = None
    tf_experimental_compile: bool = False
    return_tensors: str = "pt"

    def __post_init__(self) -> None:
        if self.mlm:
            raise TokenizerError("DataCollatorForLanguageModeling(mlm=True) builds masked-LM batches, which "
                                 "formers' causal models do not use; pass mlm=False")
        if self.return_tensors != "pt":
            raise TokenizerError(f"DataCollatorForLanguageModeling: return_tensors={self.return_tensors!r}; "
                                 "formers returns 'pt' only")

    def __call__(self, examples: list[Any], return_tensors: str | None = None) -> dict[str, torch.Tensor]:
        if isinstance(examples[0], Mapping):
            batch = dict(self.tokenizer.pad(examples, return_tensors="pt",
                                            pad_to_multiple_of=self.pad_to_multiple_of))
        else:
            batch = {"input_ids": _pad_sequences(examples, self.tokenizer, self.pad_to_multiple_of)}
        batch.pop("special_tokens_mask", None)
        labels = batch["input_ids"].clone()
        if self.tokenizer is not None and self.tokenizer.pad_token_id is not None:
            labels[labels == self.tokenizer.pad_token_id] = IGNORE_INDEX
        batch["labels"] = labels
        return batch


@dataclass
class DataCollatorWithPadding:
    """Pad examples with the tokenizer (no labels added); the Trainer's default when given a tokenizer."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = dict(self.tokenizer.pad(features, padding=self.padding, max_length=self.max_length,
                                        pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"))
        for source in ("label", "label_ids"):
            if source in batch:
                batch["labels"] = batch.pop(source)
        return batch


@dataclass
class DataCollatorForSeq2Seq:
    """Seq2seq batches: inputs padded by the tokenizer, `labels` padded with `label_pad_token_id` (-100, so
    the loss skips them) on the tokenizer's padding side, and `decoder_input_ids` shifted from the labels
    when `model` is a model that can do it (a checkpoint name, as in 4.45's translation guide, adds none)."""

    tokenizer: Any
    model: Any = None
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = IGNORE_INDEX
    return_tensors: str = "pt"

    def _label_length(self, labels: list[list[int]]) -> int:
        if self.padding == "max_length" and self.max_length is not None:
            return self.max_length
        length = max(len(row) for row in labels)
        if self.pad_to_multiple_of is not None and length % self.pad_to_multiple_of:
            length += self.pad_to_multiple_of - length % self.pad_to_multiple_of
        return length

    def __call__(self, features: list[dict[str, Any]], return_tensors: str | None = None) -> dict[str, torch.Tensor]:
        key = "label" if "label" in features[0] else "labels"
        labels = [list(f[key]) for f in features] if features[0].get(key) is not None else None
        inputs = [{k: v for k, v in f.items() if k not in ("label", "labels")} for f in features]
        batch = dict(self.tokenizer.pad(inputs, padding=self.padding, max_length=self.max_length,
                                        pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"))
        if labels is None:
            return batch
        length, left = self._label_length(labels), self.tokenizer.padding_side == "left"
        rows = [[self.label_pad_token_id] * (length - len(r)) + r if left else r + [self.label_pad_token_id] *
                (length - len(r)) for r in labels]
        batch["labels"] = torch.tensor(rows, dtype=torch.long)
        if hasattr(self.model, "prepare_decoder_input_ids_from_labels"):
            batch["decoder_input_ids"] = self.model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
        return batch
