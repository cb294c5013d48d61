"""The paged KV store and the per-step Cache view the model's attention layers write and read through.

Storage: per layer one preallocated key tensor and one value tensor [num_blocks * block_size, Hkv, D];
position p of a sequence lives in slot `block_table[p // block_size] * block_size + p % block_size`.

One engine step runs the model once on all scheduled tokens flattened into a single row [1, N]
(prefill chunks and decode tokens side by side, each with its own absolute position), so every
projection, norm and MLP runs on N tokens with no padding. `StepCache.attend` (the Cache hook every
attention layer calls) writes the N new keys/values into their slots, then attends per sequence:
all one-token (decode) rows together as one padded batch [Bd, H, 1, D] over their gathered pages, and
each prefill chunk on its own. The model's own kernel runs (its scale, softcap, GQA handling).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..cache.base import Cache, Kernel


class PagedKVStore:
    """Key/value pages of every layer: [num_blocks * block_size, Hkv, D] each, allocated once."""

    def __init__(self, num_layers: int, num_blocks: int, block_size: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        slots = num_blocks * block_size
        self.block_size = block_size
        self.keys = [torch.zeros(slots, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(slots, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(num_layers)]
        self._workspace: dict[str, torch.Tensor] = {}

    def workspace(self, name: str, numel: int) -> torch.Tensor:
        """A flat buffer of at least `numel` elements kept across steps (fresh large allocations page-fault
        on every step; reusing one keeps the page gather at memory speed)."""
        buffer = self._workspace.get(name)
        if buffer is None or buffer.numel() < numel:
            like = self.keys[0]
            buffer = self._workspace[name] = torch.empty(max(numel, 2 * (buffer.numel() if buffer is not None else 0)),
                                                         dtype=like.dtype, device=like.device)
        return buffer[:numel]

    @staticmethod
    def bytes_per_block(num_layers: int, block_size: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * block_size * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


@dataclass
class StepLayout:
    """Where each scheduled sequence's tokens sit in the flat row and in the pages (built per step).

    positions [N]: each new token's absolute position; slots [N]: the slot its key/value goes to.
    Decode rows (one new token each) come first in the flat row, `num_decode` of them: `decode_pages`
    [Bd, P] the pages holding their keys (padded), `decode_positions` [Bd, P * block_size] the position
    each slot of those pages holds (-1: padding or a freed page), `decode_query` [Bd] their positions.
    Prefill chunks: (start, length, key pages [P], key positions [P * block_size], query positions [T]).
    """

    positions: torch.Tensor
    slots: torch.Tensor
    num_decode: int
    decode_pages: torch.Tensor | None
    decode_positions: torch.Tensor | None
    decode_query: torch.Tensor | None
    chunks: list[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]]


def _mask(query_positions: torch.Tensor, key_positions: torch.Tensor, window: int | None,
          dtype: torch.dtype) -> torch.Tensor:
    """query [..., T], keys [..., S] positions -> additive mask [..., 1, T, S] (causal, window, padding)."""
    q, k = query_positions[..., :, None], key_positions[..., None, :]
    allowed = (k <= q) & (k >= 0)
    if window is not None:
        allowed &= k > q - window
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(-3)


class StepCache(Cache):
    """A Cache over the paged store for one forward of the engine (flat [1, N] tokens)."""

    def __init__(self, store: PagedKVStore, layout: StepLayout, windows: list[int | None],
                 score_bias: Callable[[torch.Tensor, torch.dtype], torch.Tensor] | None = None):
        self.store, self.layout, self.windows, self.score_bias = store, layout, windows, score_bias
        self._masks: dict[tuple[Any, int | None], torch.Tensor] = {}
        self._one_slot = torch.zeros(1, dtype=torch.long, device=layout.positions.device)

    # The decoder builds its masks from these before running the layers; `attend` builds its own per
    # sequence, so the decoder is told of a single key slot (its masks cost O(N) and go unused).
    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return 0

    def attention_key_length(self, query_length: int, layer_idx: int = 0) -> int:
        return 1

    def key_positions(self, cache_position: torch.Tensor, layer_idx: int = 0) -> torch.Tensor:
        return self._one_slot

    def _cached_mask(self, name: Any, window: int | None, query, keys, dtype) -> torch.Tensor:
        """The additive mask [B, 1 or H, T, S] of one attention group, built once per step and window."""
        mask = self._masks.get((name, window))
        if mask is None:
            mask = _mask(query, keys, window, dtype)
            if self.score_bias is not None:  # ALiBi: slope_h * key position, the same for every row
                mask = mask + self.score_bias(torch.arange(keys.shape[-1], device=keys.device), dtype)
            self._masks[(name, window)] = mask
        return mask

    def _gather(self, layer_idx: int, pages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pages [B, P] -> keys, values [B, Hkv, P * block_size, D] (whole pages: one copy per page), written
        into the store's reusable workspace (valid until the next gather)."""
        flat, out = pages.reshape(-1), []
        for name, store in (("keys", self.store.keys[layer_idx]), ("values", self.store.values[layer_idx])):
            paged = store.view(-1, store[0].numel() * self.store.block_size)  # [num_blocks, page numel]
            picked = self.store.workspace(name, flat.shape[0] * paged.shape[1]).view(flat.shape[0], paged.shape[1])
            torch.index_select(paged, 0, flat, out=picked)
            out.append(picked.view(pages.shape[0], -1, *store.shape[1:]).transpose(1, 2))
        return out[0], out[1]

    def attend(self, query: torch.Tensor, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any], mask: torch.Tensor | None, kernel: Kernel):
        """query [1, H, N, D], keys/values [1, Hkv, N, D] -> attention output [1, H, N, D], no weights."""
        layout, window = self.layout, self.windows[layer_idx]
        self.store.keys[layer_idx].index_copy_(0, layout.slots, key_states[0].transpose(0, 1))
        self.store.values[layer_idx].index_copy_(0, layout.slots, value_states[0].transpose(0, 1))
        parts = []  # outputs [1, H, T, D] in flat order: the decode rows, then each chunk
        if layout.num_decode:
            q = query[0, :, :layout.num_decode].transpose(0, 1).unsqueeze(2)  # [Bd, H, 1, D]
            keys, values = self._gather(layer_idx, layout.decode_pages)       # [Bd, Hkv, S, D]
            m = self._cached_mask("decode", window, layout.decode_query[:, None], layout.decode_positions, q.dtype)
            result, _ = kernel(q, keys, values, m)
            parts.append(result.permute(2, 1, 0, 3))
        for number, (start, length, pages, positions, query_positions) in enumerate(layout.chunks):
            keys, values = self._gather(layer_idx, pages[None])
            m = self._cached_mask(number, window, query_positions[None], positions[None], query.dtype)
            result, _ = kernel(query[:, :, start:start + length], keys, values, m)
            parts.append(result)
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return out, None
