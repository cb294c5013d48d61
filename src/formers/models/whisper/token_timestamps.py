"""Token-level timestamps for Whisper (word timestamps), as 4.45.2 computes them.

The cross-attention weights of the alignment heads (generation_config.alignment_heads, [layer, head]
pairs) say which audio frames each generated token looked at. Per head they are standardised over the
tokens, smoothed along time by a median filter (config.median_filter_width), averaged over the heads,
and a dynamic-time-warping path through the negated matrix maps every token to the first encoder frame
it owns. Frame index x 0.02 s (one encoder position = 2 feature frames of 10 ms) is the token's time.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import GenerationError


def median_filter(values: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of odd `width` along the last dim, edges mirrored (no edge repeat)."""
    if width <= 0 or width % 2 != 1:
        raise GenerationError(f"median_filter_width={width}: expected a positive odd number")
    half = width // 2
    if values.shape[-1] <= half:
        return values
    shape = values.shape
    padded = F.pad(values.reshape(-1, 1, shape[-1]), (half, half), mode="reflect").reshape(*shape[:-1], -1)
    return padded.unfold(-1, width, 1).sort(dim=-1).values[..., half]


def dtw_path(cost_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path through `cost_matrix` [tokens, frames] -> (token indices, frame indices).

    Cells are filled one anti-diagonal at a time (each cell needs its left, upper and upper-left
    neighbours, which lie on the two previous diagonals). Ties prefer a frame step (left), then a token
    step (up), as the reference does; accumulated costs are kept in float32 like it.
    """
    rows, cols = cost_matrix.shape
    cost = np.full((rows + 1, cols + 1), np.inf, dtype=np.float32)
    trace = np.full((rows + 1, cols + 1), -1, dtype=np.int8)
    cost[0, 0] = 0
    for diagonal in range(2, rows + cols + 1):
        i = np.arange(max(1, diagonal - cols), min(rows, diagonal - 1) + 1)
        j = diagonal - i
        diag, up, left = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        take_diag = (diag < up) & (diag < left)
        take_up = ~take_diag & (up < diag) & (up < left)
        best = np.where(take_diag, diag, np.where(take_up, up, left))
        cost[i, j] = (cost_matrix[i - 1, j - 1] + best.astype(np.float64)).astype(np.float32)
        trace[i, j] = np.where(take_diag, 0, np.where(take_up, 1, 2))
    trace[0, :], trace[:, 0] = 2, 1
    i, j, tokens, frames = rows, cols, [], []
    while i > 0 or j > 0:
        tokens.append(i - 1)
        frames.append(j - 1)
        move = trace[i, j]
        i, j = (i - 1, j - 1) if move == 0 else (i - 1, j) if move == 1 else (i, j - 1)
    return np.array(tokens[::-1]), np.array(frames[::-1])


def _normalise(weights: torch.Tensor, width: int) -> torch.Tensor:
    """[..., heads, tokens, frames] -> [..., tokens, frames]: standardised per head over tokens, median-
    filtered over frames, averaged over heads."""
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    return median_filter((weights - mean) / std, width).mean(dim=-3)


def token_timestamps(cross_attentions: Sequence[Sequence[torch.Tensor]], sequences: torch.Tensor,
                     alignment_heads: Sequence[Sequence[int]], median_filter_width: int,
                     num_frames: int | Sequence[int] | torch.Tensor | None = None,
                     time_precision: float = 0.02) -> torch.Tensor:
    """[B, min(T, L + 1)] seconds per token of `sequences` [B, T] (the first is 0, the rest each token's
    first aligned frame). `cross_attentions`: per generate step, per layer [B, H, q, S] (L = sum of q)."""
    layers = len(cross_attentions[0])
    per_layer = [torch.cat([step[layer] for step in cross_attentions], dim=2) for layer in range(layers)]
    weights = torch.stack([per_layer[layer][:, head] for layer, head in alignment_heads], dim=1)  # [B, A, L, S]
    batch, length = weights.shape[0], weights.shape[2]
    out = torch.zeros_like(sequences, dtype=torch.float32)[:, : length + 1]
    if num_frames is None or isinstance(num_frames, int):
        limits = [None if num_frames is None else num_frames // 2] * batch
    else:
        frames = [int(n) for n in (num_frames.tolist() if torch.is_tensor(num_frames) else num_frames)]
        limits = [n // 2 for n in np.repeat(frames, batch // len(frames))]
    for row in range(batch):
        matrix = _normalise(weights[row, ..., : limits[row]], median_filter_width)
        token_ids, frame_ids = dtw_path(-matrix.cpu().double().numpy())
        jumps = np.concatenate([[True], np.diff(token_ids) != 0])
        out[row, 1:] = torch.from_numpy(frame_ids[jumps] * time_precision)
    return out
