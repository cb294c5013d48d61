"""Finished beam hypotheses kept on the device: the n-best lists of beam search, for all prompts at once.

transformers keeps one Python list per prompt and walks it per candidate (a host sync per token). Here
each "slot" (one prompt, or one prompt's beam group) holds up to `capacity` hypotheses as tensors:
scores [S, C] (float64: the length-normalised scores are compared exactly as transformers' Python
floats are), token rows [S, C, W], lengths, and optional beam-index histories. Adding candidates is a
merge: keep the `capacity` best of old + new, old ones first on ties (a new hypothesis must beat the
worst to enter, as in transformers). No host sync.
"""
from __future__ import annotations

import torch


def _stable_best(scores: torch.Tensor, valid: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices [S, keep] of the best valid entries per row, ties kept in their original order."""
    by_score = torch.sort(scores, dim=-1, descending=True, stable=True).indices
    invalid = (~valid).gather(-1, by_score).to(torch.int8)
    by_valid = torch.sort(invalid, dim=-1, stable=True).indices  # valid first, score order within
    return by_score.gather(-1, by_valid)[:, :keep]


def _pad_width(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    if t.shape[-1] >= width:
        return t
    return torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=value)


class FinishedBeams:
    """Up to `capacity` finished hypotheses for each of `slots` beam groups."""

    def __init__(self, slots: int, capacity: int, device: torch.device | str, track_history: bool = True):
        self.capacity = capacity
        self.scores = torch.full((slots, capacity), -float("inf"), dtype=torch.float64, device=device)
        self.valid = torch.zeros((slots, capacity), dtype=torch.bool, device=device)
        self.count = torch.zeros(slots, dtype=torch.long, device=device)
        self.tokens = torch.zeros((slots, capacity, 0), dtype=torch.long, device=device)
        self.lengths = torch.zeros((slots, capacity), dtype=torch.long, device=device)
        self.history = torch.zeros((slots, capacity, 0), dtype=torch.long, device=device) if track_history else None
        self.history_lengths = torch.zeros((slots, capacity), dtype=torch.long, device=device)

    def worst(self) -> torch.Tensor:
        """[S] score of the worst kept hypothesis (meaningful once a slot is full)."""
        return self.scores[:, -1]

    def add(self, slots: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, tokens: torch.Tensor,
            history: torch.Tensor | None = None) -> None:
        """Offer candidates to `slots` [S']: scores/valid [S', k], tokens [S', k, L] (all of length L),
        history [S', k, H] beam indices (or None)."""
        k, length = scores.shape[1], tokens.shape[-1]
        width = max(self.tokens.shape[-1], length)
        self.tokens = _pad_width(self.tokens, width, 0)
        all_scores = torch.cat([self.scores[slots], scores.to(torch.float64)], dim=1)      # [S', C + k]
        all_valid = torch.cat([self.valid[slots], valid], dim=1)
        order = _stable_best(all_scores, all_valid, self.capacity)                         # [S', C]
        self.scores[slots] = all_scores.gather(1, order)
        self.valid[slots] = all_valid.gather(1, order)
        self.count[slots] = torch.clamp(self.count[slots] + valid.sum(-1), max=self.capacity)
        new_lengths = torch.full((slots.shape[0], k), length, dtype=torch.long, device=scores.device)
        self.lengths[slots] = torch.cat([self.lengths[slots], new_lengths], dim=1).gather(1, order)
        all_tokens = torch.cat([self.tokens[slots], _pad_width(tokens, width, 0)], dim=1)
        self.tokens[slots] = all_tokens.gather(1, order[..., None].expand(-1, -1, width))
        if self.history is not None:
            if history is None:  # candidates without histories: keep the stored ones aligned
                history = torch.full((slots.shape[0], k, 0), -1, dtype=torch.long, device=scores.device)
            hwidth = max(self.history.shape[-1], history.shape[-1])
            self.history = _pad_width(self.history, hwidth, -1)
            all_history = torch.cat([self.history[slots], _pad_width(history, hwidth, -1)], dim=1)
            self.history[slots] = all_history.gather(1, order[..., None].expand(-1, -1, hwidth))
            new_hlen = torch.full((slots.shape[0], k), history.shape[-1], dtype=torch.long, device=scores.device)
            self.history_lengths[slots] = torch.cat([self.history_lengths[slots], new_hlen], 1).gather(1, order)

    def best(self, groups_per_prompt: int, keep: int):
        """Per prompt (its `groups_per_prompt` slots pooled): the `keep` best -> (scores [P*keep] float64,
        tokens [P*keep, W], lengths [P*keep], history [P*keep, H] or None, history lengths)."""
        prompts = self.scores.shape[0] // groups_per_prompt
        pooled = self.capacity * groups_per_prompt
        scores = self.scores.view(prompts, pooled)
        valid = self.valid.view(prompts, pooled)
        # transformers pops the best from an ascending stable sort: among equal scores the later group wins
        order = pooled - 1 - _stable_best(scores.flip(1), valid.flip(1), keep)              # [P, keep]
        width = self.tokens.shape[-1]
        tokens = self.tokens.view(prompts, pooled, width).gather(1, order[..., None].expand(-1, -1, width))
        lengths = self.lengths.view(prompts, pooled).gather(1, order)
        history = hlen = None
        if self.history is not None:
            hwidth = self.history.shape[-1]
            history = self.history.view(prompts, pooled, hwidth).gather(1, order[..., None].expand(-1, -1, hwidth))
            history = history.reshape(prompts * keep, hwidth)
            hlen = self.history_lengths.view(prompts, pooled).gather(1, order).reshape(-1)
        return (scores.gather(1, order).reshape(-1), tokens.reshape(prompts * keep, width), lengths.reshape(-1),
                history, hlen)
