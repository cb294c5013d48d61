"""compute_transition_scores: the score each chosen token had when it was chosen."""
from __future__ import annotations

import torch


def compute_transition_scores(sequences: torch.Tensor, scores: tuple[torch.Tensor, ...],
                              beam_indices: torch.Tensor | None = None, normalize_logits: bool = False,
                              vocab_size: int | None = None) -> torch.Tensor:
    """[N, T] scores of the last T tokens of `sequences` [N, L] (T = generated steps).

    `scores` holds one [rows, V] tensor per step. Without `beam_indices` row i of step t scored token
    i's step t; with them (beam search), step t of output row i was scored in row beam_indices[i, t],
    and negative indices mark steps after that hypothesis ended (their score is 0).
    """
    steps = len(scores)
    if beam_indices is None:
        beam_indices = torch.arange(scores[0].shape[0], device=sequences.device).view(-1, 1).expand(-1, steps)
    stacked = torch.stack(scores, dim=1)                                          # [rows, steps, V]
    if normalize_logits:
        width = vocab_size if vocab_size is not None else stacked.shape[-1]
        stacked = torch.log_softmax(stacked.reshape(stacked.shape[0], steps, -1, width), dim=-1).reshape(
            stacked.shape)
    ended = beam_indices < 0
    length = int((~ended).sum(-1).max())
    ended = ended[:, :length]
    rows = beam_indices[:, :length].masked_fill(ended, 0).to(stacked.device)
    tokens = sequences[:, sequences.shape[-1] - length:].to(stacked.device)
    step = torch.arange(length, device=stacked.device).expand_as(rows)
    out = stacked[rows, step, tokens]
    return out.masked_fill(ended.to(out.device), 0)
