"""ALiBi (attention with linear biases, Press et al. 2021): no position embeddings; each head adds
slope_h * (key position) to its scores. Softmax ignores what is constant along a query's row, so the
key's position alone gives the paper's -slope * distance. Positions count real tokens only (from the
attention mask), so a left-padded row biases exactly as the same row unpadded (Bloom, Falcon-RW)."""
from __future__ import annotations

import math

import torch


def alibi_slopes(num_heads: int, device=None) -> torch.Tensor:
    """[H] float32: the geometric sequence 2^(-8/n), 2^(-16/n), ... for the largest power of two n <= H,
    then every other slope of the sequence for 2n, for the heads past n."""
    closest = 2 ** math.floor(math.log2(num_heads))

    def powers(base: float, exponents: torch.Tensor) -> torch.Tensor:  # float32 base, as trained
        return torch.pow(torch.tensor(base, dtype=torch.float32, device=device), exponents)

    slopes = powers(2.0 ** (-8.0 / closest), torch.arange(1, closest + 1, device=device))
    if closest != num_heads:
        extra = min(closest, num_heads - closest)
        slopes = torch.cat([slopes, powers(2.0 ** (-4.0 / closest), torch.arange(1, 2 * extra, 2, device=device))])
    return slopes


def token_positions(attention_mask: torch.Tensor | None, key_positions: torch.Tensor,
                    batch_size: int) -> torch.Tensor:
    """[B, S] long: how many real tokens precede each key slot (0 for padding and empty slots)."""
    if attention_mask is None:
        return key_positions.clamp(min=0)[None].expand(batch_size, -1)
    counted = (attention_mask.long().cumsum(-1) - 1) * attention_mask.long()
    index = key_positions.clamp(0, counted.shape[-1] - 1)[None].expand(counted.shape[0], -1)
    return counted.gather(1, index)
