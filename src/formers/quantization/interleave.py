"""GGUF Q8_0 / Q4_0 blocks regrouped 16 output rows at a time, the layout kernels/quant.h decodes fastest.

Row-major blocks (as the file stores them) are uint8 [N, K / 32 * block bytes]. The interleaved form holds
the same bytes as uint8 [N / 16, 16 * K / 32 * block bytes]: for each group of 16 rows and each block column,
the 16 fp16 scales, then the quantized bytes four at a time, row after row (quant.h's header says why). It
is made at a model's first inference call (kernels/decode.py `pack_for_decoding`), never saved: state dicts
and every reader outside the kernels see row-major blocks again.
"""
from __future__ import annotations

import torch
from torch import Tensor

GROUP_ROWS = 16


def is_interleaved(blocks: Tensor, out_features: int) -> bool:
    """Whether `blocks` of a weight with `out_features` rows is in the 16-row-group layout (the shape tells)."""
    return blocks.shape[0] * GROUP_ROWS == out_features and out_features > 0


def interleave(blocks: Tensor, block_bytes: int) -> Tensor:
    """Row-major blocks [N, width] (N a multiple of 16) -> the interleaved layout [N / 16, 16 * width]."""
    rows, width = blocks.shape
    groups, columns, words = rows // GROUP_ROWS, width // block_bytes, (block_bytes - 2) // 4
    grid = blocks.reshape(groups, GROUP_ROWS, columns, block_bytes)
    scales = grid[..., :2].permute(0, 2, 1, 3).reshape(groups, columns, 2 * GROUP_ROWS)
    quants = grid[..., 2:].reshape(groups, GROUP_ROWS, columns, words, 4).permute(0, 2, 3, 1, 4)
    return torch.cat([scales, quants.reshape(groups, columns, -1)], dim=-1).reshape(groups, GROUP_ROWS * width)


def deinterleave(packed: Tensor, block_bytes: int) -> Tensor:
    """The interleaved layout [N / 16, 16 * width] -> row-major blocks [N, width]."""
    groups, width = packed.shape[0], packed.shape[1] // GROUP_ROWS
    columns, words = width // block_bytes, (block_bytes - 2) // 4
    grid = packed.reshape(groups, columns, GROUP_ROWS * block_bytes)
    scales = grid[..., :2 * GROUP_ROWS].reshape(groups, columns, GROUP_ROWS, 2).permute(0, 2, 1, 3)
    quants = grid[..., 2 * GROUP_ROWS:].reshape(groups, columns, words, GROUP_ROWS, 4).permute(0, 3, 1, 2, 4)
    return torch.cat([scales, quants.reshape(groups, GROUP_ROWS, columns, -1)], dim=-1).reshape(groups * GROUP_ROWS, width)


def row_major(blocks: Tensor, out_features: int, block_bytes: int) -> Tensor:
    """The row-major blocks [N, width] of a weight with `out_features` rows held in either layout."""
    return deinterleave(blocks, block_bytes) if is_interleaved(blocks, out_features) else blocks


def rows(blocks: Tensor, index: Tensor, out_features: int, block_bytes: int) -> Tensor:
    """Row-major blocks of the rows `index` (1-D) of a weight in either layout."""
    if not is_interleaved(blocks, out_features):
        return blocks[index]
    columns, words = blocks.shape[1] // (GROUP_ROWS * block_bytes), (block_bytes - 2) // 4
    grid = blocks.view(blocks.shape[0], columns, GROUP_ROWS * block_bytes)
    group, row = index // GROUP_ROWS, index % GROUP_ROWS
    scales = grid[..., :2 * GROUP_ROWS].view(-1, columns, GROUP_ROWS, 2)[group, :, row]  # [n, columns, 2]
    quants = grid[..., 2 * GROUP_ROWS:].view(-1, columns, words, GROUP_ROWS, 4)[group, :, :, row]  # [n, columns, words, 4]
    return torch.cat([scales, quants.flatten(2)], dim=-1).view(index.numel(), columns * block_bytes)
