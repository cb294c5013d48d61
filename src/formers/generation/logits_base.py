"""Base classes of logits processors, the list that chains them, and small shared helpers.

A processor maps (input_ids [B, L], scores [B, V]) -> scores [B, V]. Every processor here is pure
(it never edits `scores` in place) and stays on the scores' device: no host syncs per step.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Iterable, Sequence

import torch

from ..errors import GenerationError


class LogitsProcessor:
    """Base of every processor applied to next-token scores during generation."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        raise NotImplementedError(f"{self.__class__} is an abstract class: subclass it and define __call__.")


class StepAwareProcessor(LogitsProcessor):
    """A processor that wants the ids of each step before the step's forward pass runs (to overlap host
    work with it, as structured output's mask computation does); the token loop calls `prepare_step`."""

    def prepare_step(self, input_ids: torch.LongTensor) -> None:
        """The ids [B, L] the coming step's scores will be computed for (default: nothing)."""


class LogitsWarper:
    """Deprecated base (as in transformers 4.45): subclass `LogitsProcessor` instead."""

    def __init__(self) -> None:
        warnings.warn("`LogitsWarper` is deprecated; inherit from `LogitsProcessor`, which has the same interface.",
                      FutureWarning, stacklevel=2)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        raise NotImplementedError(f"{self.__class__} is an abstract class: subclass it and define __call__.")


# type(processor) -> (names of required extra __call__ arguments, accepts **kwargs)
_SIGNATURES: dict[type, tuple[tuple[str, ...], bool]] = {}


def _call_signature(processor: Any) -> tuple[tuple[str, ...], bool]:
    key = type(processor)
    if key not in _SIGNATURES:
        params = list(inspect.signature(processor.__call__).parameters.values())[2:]
        names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                      and p.default is p.empty)
        _SIGNATURES[key] = (names, any(p.kind is p.VAR_KEYWORD for p in params))
    return _SIGNATURES[key]


class LogitsProcessorList(list):
    """A list of processors applied in order; extra kwargs go to the processors whose __call__ takes them."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.FloatTensor:
        traced_without_extras = not kwargs and torch.compiler.is_compiling()  # inspect cannot be traced
        for processor in self:
            if traced_without_extras:
                scores = processor(input_ids, scores)
                continue
            required, takes_any = _call_signature(processor)
            if not required and not takes_any:
                scores = processor(input_ids, scores)
                continue
            missing = [name for name in required if name not in kwargs]
            if missing:
                raise GenerationError(f"{processor.__class__.__name__} needs the arguments {missing}: pass them "
                                      "to the LogitsProcessorList call")
            scores = processor(input_ids, scores, **kwargs)
        return scores

    def prepare_step(self, input_ids: torch.LongTensor) -> None:
        """Hand the coming step's ids to the processors that look ahead (`StepAwareProcessor`)."""
        for processor in self:
            if isinstance(processor, StepAwareProcessor):
                processor.prepare_step(input_ids)


def as_id_tensor(ids: int | Sequence[int] | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """One id, a list of ids or a tensor -> 1-D (or given-shape) long tensor; tensors are kept as they are."""
    if isinstance(ids, torch.Tensor):
        return ids
    if isinstance(ids, int):
        ids = [ids]
    return torch.tensor(list(ids), device=device)


def host_ids(ids: int | Sequence[int] | torch.Tensor) -> list[int] | None:
    """Ids as a Python list when that needs no device sync (ints, lists, CPU tensors); else None."""
    if isinstance(ids, torch.Tensor):
        return ids.reshape(-1).tolist() if ids.device.type == "cpu" else None
    if isinstance(ids, int):
        return [ids]
    return list(ids)


class VocabMask:
    """A bool mask [V] marking a fixed id set, built once per (vocab size, device)."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids
        self._key: tuple[int, torch.device] | None = None
        self._mask: torch.Tensor | None = None

    def get(self, scores: torch.Tensor) -> torch.Tensor:
        key = (scores.shape[-1], scores.device)
        if self._key != key:
            vocab = torch.arange(scores.shape[-1], device=scores.device)
            self._mask = torch.isin(vocab, self.ids.to(scores.device))
            self._key = key
        return self._mask


def ids_are_valid(ids: Iterable[Any]) -> bool:
    """True when every element is a non-negative integer (Python or numpy)."""
    return all(_is_integer(i) and i >= 0 for i in ids)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return True  # transformers accepts bools as ints
    if isinstance(value, int):
        return True
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"
