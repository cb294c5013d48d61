"""The paged KV store and the per-step Cache view the model's attention layers write and read through.

Storage: per layer one preallocated key tensor and one value tensor [Hkv, num_blocks * block_size, D]
(head-major, so a page of one head is a contiguous [block_size, D] run and gathered pages land in the
[B, Hkv, S, D] layout the attention kernel reads at full speed); position p of a sequence lives in slot
`block_table[p // block_size] * block_size + p % block_size`.

One engine step runs the model once on all scheduled tokens flattened into a single row [1, N]
(prefill chunks and decode tokens side by side, each with its own absolute position), so every
projection, norm and MLP runs on N tokens with no padding. `StepCache.attend` (the Cache hook every
attention layer calls) writes the N new keys/values into their slots, fetches every page the step reads
with one gather per layer into a reusable workspace, then attends group by group (`StepLayout.groups`):
buckets of decode rows of similar length as padded batches, each prefill chunk on its own (a chunk
starting at position 0 straight from its fresh keys). The model's own kernel runs (its scale, softcap,
GQA handling); the masks are built once per step and shared by every layer.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..cache.base import Cache, Kernel


class PagedKVStore:
    """Key/value pages of every layer: [Hkv, num_blocks * block_size, D] each, allocated once."""

    def __init__(self, num_layers: int, num_blocks: int, block_size: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        slots = num_blocks * block_size
        self.num_blocks, self.block_size, self.kv_heads, self.head_dim = num_blocks, block_size, kv_heads, head_dim
        self.keys = [torch.zeros(kv_heads, slots, head_dim, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(kv_heads, slots, head_dim, dtype=dtype, device=device) for _ in range(num_layers)]
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

    def gather(self, layer_idx: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """index [R] of (head * num_blocks + page) -> keys, values [R, block_size * D] (one copy per head-page),
        in the workspace (valid until the next gather)."""
        page = self.block_size * self.head_dim
        out = []
        for name, store in (("keys", self.keys[layer_idx]), ("values", self.values[layer_idx])):
            picked = self.workspace(name, index.shape[0] * page).view(index.shape[0], page)
            torch.index_select(store.view(-1, page), 0, index, out=picked)
            out.append(picked)
        return out[0], out[1]

    @staticmethod
    def bytes_per_block(num_layers: int, block_size: int, kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * num_layers * block_size * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


@dataclass
class AttentionGroup:
    """Rows of the flat row that attend together: `rows` rows of `length` query tokens each, starting at
    flat token `start`. query_positions [rows, length]; key_positions [rows, S] (-1: not attended) and
    `at` (first gathered head-page in the workspace, rows x Hkv x S / block_size of them) — both None
    for a fresh chunk, whose keys are its own new keys (positions 0..length-1, causal), and for a decode
    row read in place: `span` (first slot, key count), its keys being slots first..first+count-1."""

    start: int
    rows: int
    length: int
    query_positions: torch.Tensor
    key_positions: torch.Tensor | None
    at: int | None
    span: tuple[int, int] | None = None


@dataclass
class StepLayout:
    """Where each scheduled token sits in the flat row and in the pages, and who attends to what.

    positions [N]: each new token's absolute position; slots [N]: the slot its key/value goes to;
    groups: in flat order, covering the N tokens; gather_index [R]: every head-page the groups read.
    """

    positions: torch.Tensor
    slots: torch.Tensor
    groups: list[AttentionGroup]
    gather_index: torch.Tensor | None


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
    """A Cache over the paged store for one forward of the engine (flat [1, N] tokens).

    `causal_when_unmasked[layer]`: that layer's kernel treats a missing mask as causal (SDPA), so a fresh
    chunk inside its window runs with no mask at all (the kernel's causal fast path)."""

    def __init__(self, store: PagedKVStore, layout: StepLayout, windows: list[int | None],
                 score_bias: Callable[[torch.Tensor, torch.dtype], torch.Tensor] | None = None,
                 causal_when_unmasked: list[bool] | None = None):
        self.store, self.layout, self.windows, self.score_bias = store, layout, windows, score_bias
        self.causal_when_unmasked = causal_when_unmasked or [False] * len(windows)
        self._masks: dict[tuple[int, int | None], torch.Tensor] = {}
        self._one_slot = torch.zeros(1, dtype=torch.long, device=layout.positions.device)

    # The decoder builds its masks from these before running the layers; `attend` builds its own per
    # group, so the decoder is told of a single key slot (its masks cost O(N) and go unused).
    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return 0

    def attention_key_length(self, query_length: int, layer_idx: int = 0) -> int:
        return 1

    def key_positions(self, cache_position: torch.Tensor, layer_idx: int = 0) -> torch.Tensor:
        return self._one_slot

    def _group_mask(self, number: int, group: AttentionGroup, window: int | None, dtype) -> torch.Tensor:
        """The additive mask [rows, 1, T, S] of one group, built once per step and window."""
        mask = self._masks.get((number, window))
        if mask is None:
            keys = group.key_positions
            if keys is None:  # a fresh chunk: keys are positions 0..T-1
                keys = group.query_positions
            mask = _mask(group.query_positions, keys, window, dtype)
            if self.score_bias is not None:  # ALiBi: slope_h * key position, the same for every row
                mask = mask + self.score_bias(torch.arange(keys.shape[-1], device=keys.device), dtype)
            self._masks[(number, window)] = mask
        return mask

    def attend(self, query: torch.Tensor, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any], mask: torch.Tensor | None, kernel: Kernel):
        """query [1, H, N, D], keys/values [1, Hkv, N, D] -> attention output [1, H, N, D], no weights."""
        layout, window, store = self.layout, self.windows[layer_idx], self.store
        store.keys[layer_idx].index_copy_(1, layout.slots, key_states[0])
        store.values[layer_idx].index_copy_(1, layout.slots, value_states[0])
        if layout.gather_index is not None:
            paged_keys, paged_values = store.gather(layer_idx, layout.gather_index)
        kv_heads, head_dim, block = store.kv_heads, store.head_dim, store.block_size
        parts = []  # outputs [1, H, rows * T, D] in flat order
        for number, group in enumerate(layout.groups):
            end = group.start + group.rows * group.length
            if group.span is not None:  # one decode row over its consecutive pages: a view, every key visible
                first, count = group.span
                if window is not None and count > window:
                    first, count = first + count - window, window
                keys = store.keys[layer_idx][None, :, first:first + count]
                values = store.values[layer_idx][None, :, first:first + count]
                result, _ = kernel(query[:, :, group.start:end], keys, values, None)
                parts.append(result)
                continue
            if group.key_positions is None:  # fresh chunk
                keys, values = key_states[:, :, group.start:end], value_states[:, :, group.start:end]
                causal = self.causal_when_unmasked[layer_idx] and self.score_bias is None \
                    and (window is None or group.length <= window)
                m = None if causal else self._group_mask(number, group, window, query.dtype)
                result, _ = kernel(query[:, :, group.start:end], keys, values, m)
                parts.append(result)
                continue
            pages = group.rows * kv_heads * group.key_positions.shape[-1] // block
            shape = (group.rows, kv_heads, group.key_positions.shape[-1], head_dim)
            keys = paged_keys[group.at:group.at + pages].view(shape)
            values = paged_values[group.at:group.at + pages].view(shape)
            m = self._group_mask(number, group, window, query.dtype)
            if group.length == 1:  # a bucket of decode rows: [rows, H, 1, D]
                q = query[0, :, group.start:end].transpose(0, 1).unsqueeze(2)
                result, _ = kernel(q, keys, values, m)
                parts.append(result.permute(2, 1, 0, 3))
            else:
                result, _ = kernel(query[:, :, group.start:end], keys, values, m)
                parts.append(result)
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return out, None
