"""Stopping criteria of transformers 4.45. Each returns a bool tensor [B] on input_ids' device.

Length and time checks read static shapes or the host clock, and EOS checks are `torch.isin` on the
device, so evaluating the criteria never waits for the accelerator.
"""
from __future__ import annotations

import copy
import logging
import time
import warnings
from typing import Any

import torch

from ..errors import GenerationError
from .logits_base import as_id_tensor
from .logits_builder import merge_user_list

logger = logging.getLogger(__name__)


class StoppingCriteria:
    """Base class: `__call__(input_ids [B, L], scores [B, V]) -> bool tensor [B]` (True = row is done)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        raise NotImplementedError("StoppingCriteria needs to be subclassed")


def _all_rows(input_ids: torch.Tensor, value: bool) -> torch.BoolTensor:
    return torch.full((input_ids.shape[0],), value, device=input_ids.device, dtype=torch.bool)


class MaxLengthCriteria(StoppingCriteria):
    """Done once the sequence (prompt included) reaches `max_length` tokens."""

    def __init__(self, max_length: int, max_position_embeddings: int | None = None):
        self.max_length = max_length
        self.max_position_embeddings = max_position_embeddings
        self._warned = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        cur_len = input_ids.shape[-1]
        is_done = cur_len >= self.max_length
        if (self.max_position_embeddings is not None and not is_done and not self._warned
                and cur_len >= self.max_position_embeddings):
            self._warned = True
            logger.warning("This generation exceeds the model's maximum length (max_position_embeddings=%d); "
                           "expect errors, degraded output, or nothing at all.", self.max_position_embeddings)
        return _all_rows(input_ids, is_done)


class MaxTimeCriteria(StoppingCriteria):
    """Done once `max_time` seconds have passed since `initial_timestamp` (default: construction time)."""

    def __init__(self, max_time: float, initial_timestamp: float | None = None):
        self.max_time = max_time
        self.initial_timestamp = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return _all_rows(input_ids, time.time() - self.initial_timestamp > self.max_time)


class EosTokenCriteria(StoppingCriteria):
    """A row is done when its last token is one of `eos_token_id` (an int, a list or a tensor)."""

    def __init__(self, eos_token_id: int | list[int] | torch.Tensor):
        self.eos_token_id = as_id_tensor(eos_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if self.eos_token_id.device != input_ids.device:
            self.eos_token_id = self.eos_token_id.to(input_ids.device)
        return torch.isin(input_ids[:, -1], self.eos_token_id)


class ConfidenceCriteria(StoppingCriteria):
    """Assistant models: a row is done once the probability of its newest token under the latest scores
    (`scores[-1]`, as recorded during generation) falls below `assistant_confidence_threshold`."""

    def __init__(self, assistant_confidence_threshold: float):
        self.assistant_confidence_threshold = assistant_confidence_threshold

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        probs = scores[-1].softmax(-1)
        return probs.gather(1, input_ids[:, -1:]).squeeze(1) < self.assistant_confidence_threshold


class StoppingCriteriaList(list):
    """Criteria OR-ed together into one bool tensor [B]."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        is_done = _all_rows(input_ids, False)
        for criteria in self:
            is_done = is_done | criteria(input_ids, scores, **kwargs)
        return is_done

    @property
    def max_length(self) -> int | None:
        """`max_length` of the first MaxLengthCriteria in the list, if any."""
        for criteria in self:
            if isinstance(criteria, MaxLengthCriteria):
                return criteria.max_length
        return None


def validate_stopping_criteria(stopping_criteria: StoppingCriteriaList, max_length: int) -> StoppingCriteriaList:
    """A copy of the list that stops at `max_length` (warning when it held a different max length)."""
    stopping_max_length = stopping_criteria.max_length
    new = copy.deepcopy(stopping_criteria)
    if stopping_max_length is not None and stopping_max_length != max_length:
        warnings.warn("You set different `max_length` for stopping criteria and `max_length` parameter", UserWarning)
    elif stopping_max_length is None:
        new.append(MaxLengthCriteria(max_length=max_length))
    return new


def build_stopping_criteria(
    generation_config: Any,
    user_criteria: StoppingCriteriaList | None = None,
    *,
    eos_token_id: torch.Tensor | int | list[int] | None = None,
    max_position_embeddings: int | None = None,
    tokenizer: Any = None,
) -> StoppingCriteriaList:
    """Criteria in transformers 4.45's order: max length, max time, stop strings, EOS; then user criteria.

    `eos_token_id` is the resolved EOS tensor; when omitted, `generation_config.eos_token_id` is used.
    """
    criteria = StoppingCriteriaList()
    if generation_config.max_length is not None:
        criteria.append(MaxLengthCriteria(generation_config.max_length, max_position_embeddings))
    if generation_config.max_time is not None:
        criteria.append(MaxTimeCriteria(max_time=generation_config.max_time))
    if generation_config.stop_strings is not None:
        if tokenizer is None:
            raise GenerationError("`stop_strings` is set, but no tokenizer was given: pass the model's tokenizer "
                                  "to generate(tokenizer=...) to use stop strings")
        criteria.append(StopStringCriteria(stop_strings=generation_config.stop_strings, tokenizer=tokenizer))
    eos = eos_token_id if eos_token_id is not None else generation_config.eos_token_id
    if eos is not None:
        criteria.append(EosTokenCriteria(eos_token_id=eos))
    threshold = generation_config.assistant_confidence_threshold
    if generation_config.is_assistant and threshold is not None and threshold > 0:
        criteria.append(ConfidenceCriteria(assistant_confidence_threshold=threshold))
    return merge_user_list(criteria, user_criteria, kind="stopping criteria")


from .stop_strings import StopStringCriteria  # noqa: E402  (it subclasses StoppingCriteria above)
