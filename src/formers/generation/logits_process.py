"""Logits processors of transformers 4.45 (same constructor arguments, validation and outputs).

Shapes: input_ids [B, L], scores [B, V]. Processors never edit `scores` in place and never sync the
host: length conditions read static shapes, token sets are precomputed device masks, n-gram and
sequence matching is batched tensor work. The sampling warpers live in `logits_warpers.py`.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..errors import GenerationError
from .logits_base import LogitsProcessor, LogitsProcessorList, LogitsWarper, VocabMask, as_id_tensor
from .logits_warpers import (EpsilonLogitsWarper, EtaLogitsWarper, MinPLogitsWarper, TemperatureLogitsWarper,
                             TopKLogitsWarper, TopPLogitsWarper, TypicalLogitsWarper)
from .ngram_process import (EncoderNoRepeatNGramLogitsProcessor, NoBadWordsLogitsProcessor,
                            NoRepeatNGramLogitsProcessor, SequenceBiasLogitsProcessor)

_NEG_INF = -math.inf


def _check_eos(eos: torch.Tensor) -> None:
    """Reject float or negative eos ids; the value check only runs where it needs no device sync."""
    bad = torch.is_floating_point(eos) or (eos.device.type == "cpu" and bool((eos < 0).any()))
    if bad:
        raise GenerationError(f"`eos_token_id` has to be a list of positive integers, but is {eos}")


class MinLengthLogitsProcessor(LogitsProcessor):
    """Forbid EOS while the sequence (prompt included) is shorter than `min_length`."""

    def __init__(self, min_length: int, eos_token_id: int | list[int] | torch.Tensor, device: str = "cpu"):
        if not isinstance(min_length, int) or min_length < 0:
            raise GenerationError(f"`min_length` has to be a non-negative integer, but is {min_length}")
        self.min_length = min_length
        self.eos_token_id = as_id_tensor(eos_token_id, device)
        self._eos_mask = VocabMask(self.eos_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] < self.min_length:
            return scores.masked_fill(self._eos_mask.get(scores), _NEG_INF)
        return scores


class MinNewTokensLengthLogitsProcessor(LogitsProcessor):
    """Forbid EOS until `min_new_tokens` tokens follow the first `prompt_length_to_skip` ones."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int,
                 eos_token_id: int | list[int] | torch.Tensor, device: str = "cpu"):
        for name, value in (("prompt_length_to_skip", prompt_length_to_skip), ("min_new_tokens", min_new_tokens)):
            if not isinstance(value, int) or value < 0:
                raise GenerationError(f"`{name}` has to be a positive integer, but is {value}")
        self.prompt_length_to_skip = prompt_length_to_skip
        self.min_new_tokens = min_new_tokens
        self.eos_token_id = as_id_tensor(eos_token_id, device)
        self._eos_mask = VocabMask(self.eos_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] - self.prompt_length_to_skip < self.min_new_tokens:
            return scores.masked_fill(self._eos_mask.get(scores), _NEG_INF)
        return scores


class RepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """Penalize tokens already in `input_ids`: positive scores divided, negative multiplied by `penalty`."""

    def __init__(self, penalty: float):
        if not isinstance(penalty, float) or not penalty > 0:
            raise GenerationError(f"`penalty` has to be a strictly positive float, but is {penalty}")
        self.penalty = penalty

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        seen = torch.gather(scores, 1, input_ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, input_ids, seen)


class EncoderRepetitionPenaltyLogitsProcessor(LogitsProcessor):
    """Favour (penalty > 1) tokens of `encoder_input_ids` (for decoder-only models: the prompt)."""

    def __init__(self, penalty: float, encoder_input_ids: torch.LongTensor):
        if not isinstance(penalty, float) or not penalty > 0:
            raise GenerationError(f"`penalty` has to be a strictly positive float, but is {penalty}")
        self.penalty = 1 / penalty
        self.encoder_input_ids = encoder_input_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        seen = torch.gather(scores, 1, self.encoder_input_ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, self.encoder_input_ids, seen)


class ForcedBOSTokenLogitsProcessor(LogitsProcessor):
    """Force `bos_token_id` as the first generated token (when input_ids has length 1)."""

    def __init__(self, bos_token_id: int):
        self.bos_token_id = bos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] != 1:
            return scores
        forced = torch.full_like(scores, _NEG_INF)
        forced[:, self.bos_token_id] = 0
        return forced


class ForcedEOSTokenLogitsProcessor(LogitsProcessor):
    """Force one of the EOS ids when the next token is the last one allowed by `max_length`."""

    def __init__(self, max_length: int, eos_token_id: int | list[int] | torch.Tensor, device: str = "cpu"):
        self.max_length = max_length
        self.eos_token_id = as_id_tensor(eos_token_id, device)
        _check_eos(self.eos_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] != self.max_length - 1:
            return scores
        forced = torch.full_like(scores, _NEG_INF)
        forced[:, self.eos_token_id.to(scores.device)] = 0
        return forced


class InfNanRemoveLogitsProcessor(LogitsProcessor):
    """Replace NaN by 0 and +/-inf by the dtype's max/min, so sampling cannot fail."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        info = torch.finfo(scores.dtype)
        return torch.nan_to_num(scores, nan=0.0, posinf=info.max, neginf=info.min)


class ExponentialDecayLengthPenalty(LogitsProcessor):
    """After `start_index` new tokens, raise EOS scores by |score| * (decay_factor ** steps - 1)."""

    def __init__(self, exponential_decay_length_penalty: tuple[int, float],
                 eos_token_id: int | list[int] | torch.Tensor, input_ids_seq_length: int):
        self.regulation_start = exponential_decay_length_penalty[0] + input_ids_seq_length
        self.regulation_factor = exponential_decay_length_penalty[1]
        self.eos_token_id = as_id_tensor(eos_token_id)
        _check_eos(self.eos_token_id)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        cur_len = input_ids.shape[-1]
        if cur_len <= self.regulation_start:
            return scores
        eos = self.eos_token_id.to(scores.device)
        factor = pow(self.regulation_factor, cur_len - self.regulation_start) - 1
        penalties = torch.zeros_like(scores)
        penalties[:, eos] = torch.abs(scores[:, eos]) * factor
        return scores + penalties


class LogitNormalization(LogitsProcessor):
    """Log-softmax the scores (used last, after the warpers, when `renormalize_logits=True`)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.log_softmax(dim=-1)


class SuppressTokensLogitsProcessor(LogitsProcessor):
    """Set the scores of `suppress_tokens` to -inf at every step."""

    def __init__(self, suppress_tokens: Sequence[int], device: str = "cpu"):
        self.suppress_tokens = torch.tensor(list(suppress_tokens), device=device)
        self._mask = VocabMask(self.suppress_tokens)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.masked_fill(self._mask.get(scores), _NEG_INF)


class SuppressTokensAtBeginLogitsProcessor(LogitsProcessor):
    """Set the scores of `begin_suppress_tokens` to -inf when input_ids has length `begin_index`."""

    def __init__(self, begin_suppress_tokens: Sequence[int], begin_index: int, device: str = "cpu"):
        self.begin_suppress_tokens = torch.tensor(list(begin_suppress_tokens), device=device)
        self.begin_index = begin_index
        self._mask = VocabMask(self.begin_suppress_tokens)

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] != self.begin_index:
            return scores
        return scores.masked_fill(self._mask.get(scores), _NEG_INF)


class HammingDiversityLogitsProcessor(LogitsProcessor):
    """Group beam search: penalize tokens chosen by earlier beam groups at this step."""

    def __init__(self, diversity_penalty: float, num_beams: int, num_beam_groups: int):
        if not isinstance(diversity_penalty, float) or not diversity_penalty > 0.0:
            raise GenerationError("`diversity_penalty` should be a float strictly larger than 0.")
        if not isinstance(num_beams, int) or num_beams < 2:
            raise GenerationError("`num_beams` should be an integer strictly larger than 1.")
        if not isinstance(num_beam_groups, int) or num_beam_groups < 2:
            raise GenerationError("`num_beam_groups` should be an integer strictly larger than 1.")
        if num_beam_groups > num_beams:
            raise GenerationError("`beam_groups` has to be smaller or equal to `num_beams`.")
        self._diversity_penalty = diversity_penalty
        self._num_beams = num_beams
        self._num_sub_beams = num_beams // num_beam_groups

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, current_tokens: torch.LongTensor,
                 beam_group_idx: int) -> torch.FloatTensor:
        group_start = beam_group_idx * self._num_sub_beams
        if group_start == 0:
            return scores
        group_size = min(group_start + self._num_sub_beams, self._num_beams) - group_start
        previous = current_tokens.view(-1, self._num_beams)[:, :group_start].to(scores.device)  # [B, start]
        counts = torch.zeros(previous.shape[0], scores.shape[-1], dtype=torch.long, device=scores.device)
        counts.scatter_add_(1, previous, torch.ones_like(previous))
        return scores - (self._diversity_penalty * counts).repeat_interleave(group_size, dim=0)


class PrefixConstrainedLogitsProcessor(LogitsProcessor):
    """Allow only the tokens `prefix_allowed_tokens_fn(batch_id, sent)` returns (a user callback per row)."""

    def __init__(self, prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]], num_beams: int):
        self._prefix_allowed_tokens_fn = prefix_allowed_tokens_fn
        self._num_beams = num_beams

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # The callback API is per row and returns host lists; gather them all, then write the mask once.
        rows: list[int] = []
        cols: list[int] = []
        for row, sent in enumerate(input_ids):
            allowed = list(self._prefix_allowed_tokens_fn(row // self._num_beams, sent))
            if len(allowed) == 0:
                raise GenerationError(f"`prefix_allowed_tokens_fn` returned an empty list for batch ID "
                                      f"{row // self._num_beams}: the constraint is unsatisfiable.")
            rows.extend([row] * len(allowed))
            cols.extend(int(t) for t in allowed)
        mask = torch.full_like(scores, _NEG_INF)
        mask[torch.tensor(rows, device=scores.device), torch.tensor(cols, device=scores.device)] = 0
        return scores + mask


class ClassifierFreeGuidanceLogitsProcessor(LogitsProcessor):
    """CFG for batches stacked as [conditional; unconditional]: uncond + scale * (cond - uncond)."""

    def __init__(self, guidance_scale: float):
        if not guidance_scale > 1:
            raise GenerationError(f"`guidance_scale` has to be strictly greater than 1 for classifier-free "
                                  f"guidance, but is {guidance_scale}")
        self.guidance_scale = guidance_scale

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != 2 * input_ids.shape[0]:
            raise GenerationError(f"classifier-free guidance needs scores with twice the batch size of input_ids "
                                  f"({2 * input_ids.shape[0]}), got {scores.shape[0]}")
        cond, uncond = scores.split(input_ids.shape[0], dim=0)
        return uncond + (cond - uncond) * self.guidance_scale


from .guidance import UnbatchedClassifierFreeGuidanceLogitsProcessor  # noqa: E402
from .watermarking import WatermarkLogitsProcessor  # noqa: E402
from .logits_builder import build_logits_processor  # noqa: E402  (the builder uses the classes above)

__all__ = [
    "LogitsProcessor", "LogitsWarper", "LogitsProcessorList", "build_logits_processor",
    "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper",
    "EpsilonLogitsWarper", "EtaLogitsWarper",
    "MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor", "RepetitionPenaltyLogitsProcessor",
    "EncoderRepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor", "EncoderNoRepeatNGramLogitsProcessor",
    "SequenceBiasLogitsProcessor", "NoBadWordsLogitsProcessor", "ForcedBOSTokenLogitsProcessor",
    "ForcedEOSTokenLogitsProcessor", "InfNanRemoveLogitsProcessor", "ExponentialDecayLengthPenalty",
    "LogitNormalization", "SuppressTokensLogitsProcessor", "SuppressTokensAtBeginLogitsProcessor",
    "HammingDiversityLogitsProcessor", "PrefixConstrainedLogitsProcessor", "ClassifierFreeGuidanceLogitsProcessor",
    "UnbatchedClassifierFreeGuidanceLogitsProcessor", "WatermarkLogitsProcessor",
]
