"""Sampling warpers: temperature, top-k, top-p, min-p, typical, epsilon and eta truncation.

Same arguments, validation and outputs as transformers 4.45. Shapes: scores [B, V]; every step is a
handful of batched tensor ops on the scores' device (no host syncs).
"""
from __future__ import annotations

import torch

from ..errors import GenerationError
from .logits_base import LogitsProcessor

_NEG_INF = -float("inf")


def _check_min_tokens_to_keep(min_tokens_to_keep: object, strictly: bool = False) -> None:
    if not isinstance(min_tokens_to_keep, int) or min_tokens_to_keep < 1:
        kind = "strictly positive" if strictly else "positive"
        raise GenerationError(f"`min_tokens_to_keep` has to be a {kind} integer, but is {min_tokens_to_keep}")


def _kth_largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[B, 1] value of the k-th largest score per row (k clipped to V)."""
    return torch.topk(scores, min(k, scores.shape[-1]))[0][..., -1:]


def _unsort(sorted_mask: torch.Tensor, sorted_indices: torch.Tensor) -> torch.Tensor:
    """Scatter a mask given in sorted order back to vocabulary order."""
    return sorted_mask.scatter(1, sorted_indices, sorted_mask)


class TemperatureLogitsWarper(LogitsProcessor):
    """Divide scores by `temperature` (> 0): < 1 sharpens, > 1 flattens the distribution."""

    def __init__(self, temperature: float):
        if not isinstance(temperature, float) or not temperature > 0:
            msg = (f"`temperature` (={temperature}) has to be a strictly positive float, otherwise the scores are "
                   "invalid.")
            if isinstance(temperature, float) and temperature == 0.0:
                msg += " For greedy decoding, set `do_sample=False`."
            raise GenerationError(msg)
        self.temperature = temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores / self.temperature


class TopKLogitsWarper(LogitsProcessor):
    """Keep the `top_k` highest scores (ties with the k-th kept too); others become `filter_value`."""

    def __init__(self, top_k: int, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or top_k <= 0:
            raise GenerationError(f"`top_k` has to be a strictly positive integer, but is {top_k}")
        self.top_k = max(top_k, min_tokens_to_keep)
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.masked_fill(scores < _kth_largest(scores, self.top_k), self.filter_value)


class TopPLogitsWarper(LogitsProcessor):
    """Nucleus sampling: keep the smallest set of tokens whose probabilities add up to `top_p`."""

    def __init__(self, top_p: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1):
        top_p = float(top_p)
        if top_p < 0 or top_p > 1.0:
            raise GenerationError(f"`top_p` has to be a float > 0 and < 1, but is {top_p}")
        _check_min_tokens_to_keep(min_tokens_to_keep)
        self.top_p = top_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # ascending order: drop the low tail whose total mass stays within 1 - top_p
        drop = cumulative <= (1 - self.top_p)
        drop[..., -self.min_tokens_to_keep:] = False
        return scores.masked_fill(_unsort(drop, sorted_indices), self.filter_value)


class MinPLogitsWarper(LogitsProcessor):
    """Drop tokens whose probability is below `min_p` times the top token's probability."""

    def __init__(self, min_p: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1):
        if not 0 <= min_p <= 1.0:
            raise GenerationError(f"`min_p` has to be a float in the [0, 1] interval, but is {min_p}")
        _check_min_tokens_to_keep(min_tokens_to_keep)
        self.min_p = min_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores, dim=-1)
        drop = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        if self.min_tokens_to_keep > 1:  # the top token is never dropped, so only >1 needs the sort
            sorted_indices = torch.argsort(scores, descending=True, dim=-1)
            sorted_drop = torch.gather(drop, -1, sorted_indices)
            sorted_drop[..., : self.min_tokens_to_keep] = False
            drop = _unsort(sorted_drop, sorted_indices)
        return scores.masked_fill(drop, self.filter_value)


class TypicalLogitsWarper(LogitsProcessor):
    """Locally typical sampling: keep tokens whose surprisal is closest to the entropy, up to mass `mass`."""

    def __init__(self, mass: float = 0.9, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1):
        mass = float(mass)
        if not 0 < mass < 1:
            raise GenerationError(f"`typical_p` has to be a float > 0 and < 1, but is {mass}")
        _check_min_tokens_to_keep(min_tokens_to_keep)
        self.filter_value = filter_value
        self.mass = mass
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_probs = torch.nn.functional.log_softmax(scores, dim=-1)
        entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)          # [B, 1]
        distance = torch.abs(-log_probs - entropy)                                  # [B, V]
        sorted_distance, sorted_indices = torch.sort(distance, descending=False)
        cumulative = scores.gather(-1, sorted_indices).softmax(dim=-1).cumsum(dim=-1)
        last = (cumulative < self.mass).sum(dim=1).clamp_(max=sorted_distance.shape[-1] - 1)
        drop = sorted_distance > sorted_distance.gather(1, last.view(-1, 1))
        drop[..., : self.min_tokens_to_keep] = False
        return scores.masked_fill(_unsort(drop, sorted_indices), self.filter_value)


class EpsilonLogitsWarper(LogitsProcessor):
    """Epsilon sampling: drop tokens with probability below `epsilon`."""

    def __init__(self, epsilon: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1):
        epsilon = float(epsilon)
        if epsilon <= 0 or epsilon >= 1:
            raise GenerationError(f"`epsilon_cutoff` has to be a float > 0 and < 1, but is {epsilon}")
        min_tokens_to_keep = int(min_tokens_to_keep)
        _check_min_tokens_to_keep(min_tokens_to_keep, strictly=True)
        self.epsilon = epsilon
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        drop = scores.softmax(dim=-1) < self.epsilon
        drop &= scores < _kth_largest(scores, self.min_tokens_to_keep)
        return scores.masked_fill(drop, self.filter_value)


class EtaLogitsWarper(LogitsProcessor):
    """Eta sampling: drop tokens below min(eta, sqrt(eta) * exp(-entropy))."""

    def __init__(self, epsilon: float, filter_value: float = _NEG_INF, min_tokens_to_keep: int = 1,
                 device: str | torch.device = "cpu"):
        epsilon = float(epsilon)
        if epsilon <= 0 or epsilon >= 1:
            raise GenerationError(f"`eta_cutoff` has to be a float > 0 and < 1, but is {epsilon}")
        min_tokens_to_keep = int(min_tokens_to_keep)
        _check_min_tokens_to_keep(min_tokens_to_keep, strictly=True)
        self.epsilon = torch.tensor(epsilon, device=device)
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = scores.softmax(dim=-1)
        # entropy of Categorical(logits=scores), computed the same way torch.distributions does
        log_probs = scores - scores.logsumexp(dim=-1, keepdim=True)
        clamped = torch.clamp(log_probs, min=torch.finfo(log_probs.dtype).min)
        entropy = -(clamped * log_probs.softmax(dim=-1)).sum(-1)
        eta = torch.min(self.epsilon, torch.sqrt(self.epsilon) * torch.exp(-entropy))[..., None]
        drop = (probs < eta) & (scores < _kth_largest(scores, self.min_tokens_to_keep))
        return scores.masked_fill(drop, self.filter_value)
