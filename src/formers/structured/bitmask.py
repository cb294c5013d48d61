"""Apply a packed token bitmask [N, ceil(V / 32)] (int32, bit j of word w = token 32w + j allowed) to
scores [N, V] in one vectorised op: no loop over the vocabulary, on the scores' device.

Unpacking reads the mask as bytes and looks each byte up in a [256, 8] table of its bits: one gather
and one masked fill over V elements (shifting each word by 0..31 instead takes four passes over V).
"""
from __future__ import annotations

import torch

_BYTE_BITS: dict[torch.device, torch.Tensor] = {}


def _byte_bits(device: torch.device) -> torch.Tensor:
    """bool [256, 8]: row b holds the bits of byte b, least significant first."""
    table = _BYTE_BITS.get(device)
    if table is None:
        table = _BYTE_BITS[device] = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).bool().to(device)
    return table


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int, device: torch.device) -> torch.Tensor:
    """bool [N, V]: True where the bitmask allows the token (the int32 words are little-endian bytes)."""
    words = bitmask.to(device, non_blocking=True)
    rows = words.shape[0]
    return _byte_bits(device)[words.view(torch.uint8).int()].view(rows, -1)[:, :vocab_size]


def apply_token_bitmask(scores: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """scores with the tokens the bitmask forbids set to -inf (a new tensor; `scores` is untouched)."""
    allowed = unpack_bitmask(bitmask, scores.shape[-1], scores.device)
    return scores.masked_fill(~allowed, float("-inf"))
