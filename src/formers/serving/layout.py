"""Build a step's StepLayout: positions and page slots of every scheduled token, and who attends to what.

Slot of position p of a sequence: block_table[p // block_size] * block_size + p % block_size. Attention
reads whole pages; key positions read from a freed page (outside the sliding window) or past a row's
length are marked -1, which the mask turns into "not attended".

Flat order of the step's tokens: the decode rows (one new token each) first, then the prefill chunks in
schedule order. A decode row whose pages are physically consecutive (blocks.py places them so where it
can) reads its keys in place, a view of the store (`AttentionGroup.span`), with no copy and no mask.
The other decode rows, longest context first, are cut into buckets of similar page counts, so each bucket
attends as one padded batch with little padding; every page any group reads is fetched by one gather per
layer (`StepLayout.gather_index`). A chunk that starts at position 0 reads nothing from the pages: its
keys are the ones it is computing.
"""
from __future__ import annotations

import torch

from .blocks import NO_BLOCK
from .paged_cache import AttentionGroup, StepLayout

# a decode row joins the current bucket while its page count is at least this fraction of the bucket's
# first (longest) row: padding stays under ~1/4 of what the bucket reads, with few kernel calls per layer
BUCKET_FILL = 0.75


def _pages_and_positions(tables: torch.Tensor, lengths: torch.Tensor, pages: int,
                         block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block tables [B, nb] (NO_BLOCK allowed), lengths [B] -> the first `pages` pages [B, pages] to read
    (freed ones read page 0) and the position each of their slots holds [B, pages * block_size] (-1: none)."""
    read = tables[:, :pages]
    positions = torch.arange(pages * block_size, device=tables.device)
    valid = (positions[None, :] < lengths[:, None]) & (read != NO_BLOCK).repeat_interleave(block_size, dim=1)
    return read.clamp(min=0), positions.expand(read.shape[0], -1).masked_fill(~valid, -1)


def _tables(rows, device) -> torch.Tensor:
    width = max(len(seq.blocks) for seq, _ in rows)
    padded = [seq.blocks + [NO_BLOCK] * (width - len(seq.blocks)) for seq, _ in rows]
    return torch.tensor(padded, dtype=torch.long, device=device)


def _in_place(seq, block_size: int) -> bool:
    """The pages a decode row reads (positions 0..num_computed) are consecutive blocks of the store."""
    pages = seq.num_computed // block_size + 1
    first = seq.blocks[0] if seq.blocks else NO_BLOCK
    return first != NO_BLOCK and seq.blocks[:pages] == list(range(first, first + pages))


def flat_order(rows, block_size: int, views: bool = True) -> list:
    """The scheduled (sequence, n) rows in the step's flat order: the leading decode rows, those read in
    place first (when `views`), the others longest first; then the rest as scheduled."""
    decode = 0
    while decode < len(rows) and rows[decode][1] == 1:
        decode += 1
    return sorted(rows[:decode], key=lambda row: (not (views and _in_place(row[0], block_size)),
                                                  -row[0].num_computed)) + list(rows[decode:])


def _buckets(pages: list[int]) -> list[tuple[int, int]]:
    """Page counts in descending order -> (first row, row count) of each bucket."""
    buckets, first = [], 0
    for i in range(1, len(pages) + 1):
        if i == len(pages) or pages[i] < BUCKET_FILL * pages[first]:
            buckets.append((first, i - first))
            first = i
    return buckets


def build_layout(rows, block_size: int, num_blocks: int, kv_heads: int, device,
                 views: bool = True) -> tuple[StepLayout, list[int]]:
    """rows [(sequence, n new tokens)] in flat order (see `flat_order`, same `views`) -> (layout, flat index
    of each row that samples). `views` False: every decode row goes through the gather (a score bias
    over key positions needs the mask)."""
    starts, sample_index = [], []
    offset = 0
    for seq, n in rows:
        starts.append(offset)
        offset += n
        if seq.num_computed + n == len(seq.ids):
            sample_index.append(offset - 1)
    tables = _tables(rows, device)
    computed_list = [seq.num_computed for seq, _ in rows]
    computed = torch.tensor(computed_list, device=device)
    counts = torch.tensor([n for _, n in rows], device=device)
    row_of_token = torch.repeat_interleave(torch.arange(len(rows), device=device), counts, output_size=offset)
    positions = computed[row_of_token] + torch.arange(offset, device=device) \
        - torch.tensor(starts, device=device)[row_of_token]
    slots = tables[row_of_token, positions // block_size] * block_size + positions % block_size
    lengths = computed + counts

    groups, gathers, gathered = [], [], 0
    head_offsets = torch.arange(kv_heads, device=device)[None, :, None] * num_blocks

    def read(first: int, count: int, pages: int) -> tuple[torch.Tensor, int]:
        """Queue the pages of rows first..first+count-1 for the gather -> (key positions, workspace offset)."""
        nonlocal gathered
        page_ids, key_positions = _pages_and_positions(tables[first:first + count], lengths[first:first + count],
                                                       pages, block_size)
        gathers.append((head_offsets + page_ids[:, None, :]).reshape(-1))  # [rows, Hkv, pages] flat
        at, gathered = gathered, gathered + count * kv_heads * pages
        return key_positions, at

    decode = in_place = 0
    while decode < len(rows) and rows[decode][1] == 1:
        if views and decode == in_place and _in_place(rows[decode][0], block_size):
            seq = rows[decode][0]
            groups.append(AttentionGroup(decode, 1, 1, computed[decode:decode + 1, None], None, None,
                                         (seq.blocks[0] * block_size, seq.num_computed + 1)))
            in_place += 1
        decode += 1
    pages_of = [-(-(c + 1) // block_size) for c in computed_list[in_place:decode]]
    for first, count in _buckets(pages_of):
        first += in_place
        key_positions, at = read(first, count, pages_of[first - in_place])
        groups.append(AttentionGroup(first, count, 1, computed[first:first + count, None], key_positions, at))
    for i in range(decode, len(rows)):
        seq, n = rows[i]
        query_positions = positions[starts[i]:starts[i] + n][None]
        if seq.num_computed == 0:  # a fresh prompt chunk: its own keys, causal
            groups.append(AttentionGroup(starts[i], 1, n, query_positions, None, None))
            continue
        key_positions, at = read(i, 1, -(-(seq.num_computed + n) // block_size))
        groups.append(AttentionGroup(starts[i], 1, n, query_positions, key_positions, at))
    gather_index = torch.cat(gathers) if gathers else None
    return StepLayout(positions, slots, groups, gather_index), sample_index
