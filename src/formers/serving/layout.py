"""Build a step's StepLayout: positions and page slots of every scheduled token, and what each row attends.

Slot of position p of a sequence: block_table[p // block_size] * block_size + p % block_size. Key
positions read from a freed page (outside the sliding window) or past a row's length are marked -1,
which the mask turns into "not attended".
"""
from __future__ import annotations

import torch

from .blocks import NO_BLOCK
from .paged_cache import StepLayout


def _slots_and_positions(tables: torch.Tensor, lengths: torch.Tensor, width: int,
                         block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Block tables [B, nb] (NO_BLOCK allowed), lengths [B] -> slots [B, width], key positions [B, width]."""
    positions = torch.arange(width, device=tables.device)
    blocks = tables[:, positions // block_size]                        # [B, width]
    valid = (positions[None, :] < lengths[:, None]) & (blocks != NO_BLOCK)
    slots = blocks.clamp(min=0) * block_size + positions % block_size
    return slots.masked_fill(~valid, 0), positions.expand_as(slots).masked_fill(~valid, -1)


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
        (decode_rows if n == 1 else chunk_rows).append(i)
    tables = _tables(rows, block_size, device)
    computed = torch.tensor([seq.num_computed for seq, _ in rows], device=device)
    counts = torch.tensor([n for _, n in rows], device=device)
    row_of_token = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
    positions = computed[row_of_token] + torch.arange(offset, device=device) - torch.tensor(starts, device=device)[row_of_token]
    slots = tables[row_of_token, positions // block_size] * block_size + positions % block_size
    layout = StepLayout(positions, slots, None, None, None, None, [])
    lengths = computed + counts
    if decode_rows:
        index = torch.tensor(decode_rows, device=device)
        width = max(rows[i][0].num_computed + 1 for i in decode_rows)
        layout.decode_slots, layout.decode_positions = _slots_and_positions(tables[index], lengths[index], width,
                                                                            block_size)
        layout.decode_index = torch.tensor([starts[i] for i in decode_rows], device=device)
        layout.decode_query = computed[index]
    for i in chunk_rows:
        seq, n = rows[i]
        key_slots, key_positions = _slots_and_positions(tables[i:i + 1], lengths[i:i + 1], seq.num_computed + n,
                                                        block_size)
        layout.chunks.append((starts[i], n, key_slots[0], key_positions[0], positions[starts[i]:starts[i] + n]))
    return layout, sample_index
