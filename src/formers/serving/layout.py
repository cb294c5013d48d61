"""Build a step's StepLayout: positions and page slots of every scheduled token, and what each row attends.

Slot of position p of a sequence: block_table[p // block_size] * block_size + p % block_size. Attention
reads whole pages; key positions read from a freed page (outside the sliding window) or past a row's
length are marked -1, which the mask turns into "not attended".
"""
from __future__ import annotations

import torch

from .blocks import NO_BLOCK
from .paged_cache import StepLayout


def _pages_and_positions(tables: torch.Tensor, lengths: torch.Tensor, pages: int,
                         block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block tables [B, nb] (NO_BLOCK allowed), lengths [B] -> the first `pages` pages [B, pages] to read
    (freed ones read page 0) and the position each of their slots holds [B, pages * block_size] (-1: none)."""
    read = tables[:, :pages]
    positions = torch.arange(pages * block_size, device=tables.device)
    valid = (positions[None, :] < lengths[:, None]) & (read != NO_BLOCK).repeat_interleave(block_size, dim=1)
    return read.clamp(min=0), positions.expand(read.shape[0], -1).masked_fill(~valid, -1)


def _tables(rows, block_size: int, device) -> torch.Tensor:
    width = max(len(seq.blocks) for seq, _ in rows)
    padded = [seq.blocks + [NO_BLOCK] * (width - len(seq.blocks)) for seq, _ in rows]
    return torch.tensor(padded, dtype=torch.long, device=device)


def build_layout(rows, block_size: int, device) -> tuple[StepLayout, list[int]]:
    """rows [(sequence, n new tokens)] in flat order -> (layout, flat index of each row that samples)."""
    starts, sample_index, decode_rows, chunk_rows = [], [], [], []
    offset = 0
    for i, (seq, n) in enumerate(rows):
        starts.append(offset)
        offset += n
        if seq.num_computed + n == len(seq.ids):
            sample_index.append(offset - 1)
        # the leading one-token rows attend as one batch; every later row as a chunk of its own
        (decode_rows if n == 1 and len(decode_rows) == i else chunk_rows).append(i)
    tables = _tables(rows, block_size, device)
    computed = torch.tensor([seq.num_computed for seq, _ in rows], device=device)
    counts = torch.tensor([n for _, n in rows], device=device)
    row_of_token = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
    positions = computed[row_of_token] + torch.arange(offset, device=device) - torch.tensor(starts, device=device)[row_of_token]
    slots = tables[row_of_token, positions // block_size] * block_size + positions % block_size
    layout = StepLayout(positions, slots, len(decode_rows), None, None, None, [])
    lengths = computed + counts
    if decode_rows:
        index = torch.tensor(decode_rows, device=device)
        pages = -(-max(rows[i][0].num_computed + 1 for i in decode_rows) // block_size)
        layout.decode_pages, layout.decode_positions = _pages_and_positions(tables[index], lengths[index], pages,
                                                                            block_size)
        layout.decode_query = computed[index]
    for i in chunk_rows:
        seq, n = rows[i]
        pages = -(-(seq.num_computed + n) // block_size)
        key_pages, key_positions = _pages_and_positions(tables[i:i + 1], lengths[i:i + 1], pages, block_size)
        layout.chunks.append((starts[i], n, key_pages[0], key_positions[0], positions[starts[i]:starts[i] + n]))
    return layout, sample_index
