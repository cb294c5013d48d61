"""Apply a packed token bitmask [N, ceil(V / 32)] (int32, bit j of word w = token 32w + j allowed) to
scores [N, V] in one vectorised op: no loop over the vocabulary, on the scores' device."""
from __future__ import annotations

import torch

_SHIFTS: dict[torch.device, torch.Tensor] = {}


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int, device: torch.device) -> torch.Tensor:
    """bool [N, V]: True where the bitmask allows the token."""
    shifts = _SHIFTS.get(device)
    if shifts is None:
        shifts = _SHIFTS[device] = torch.arange(32, dtype=torch.int32, device=device)
    words = bitmask.to(device, non_blocking=True)
    bits = (words[:, :, None] >> shifts) & 1                     # [N, W, 32]
    return bits.view(words.shape[0], -1)[:, :vocab_size].bool()


def apply_token_bitmask(scores: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """scores with the tokens the bitmask forbids set to -inf (a new tensor; `scores` is untouched)."""
    allowed = unpack_bitmask(bitmask, scores.shape[-1], scores.device)
    return scores.masked_fill(~allowed, float("-inf"))
