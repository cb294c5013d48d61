"""QuantizedEmbedding: an input embedding whose table stays in llama.cpp's blocks (keep_quantized=True).

A float32 embedding of a 49k-token vocabulary is 113 MiB, more than a whole Q4_0 file of a 135M model;
kept as the file's blocks it is the file's own bytes (4.5 bits a value for Q4_0). A lookup reads only
the rows it needs and dequantizes them with the same decoder as the rest of the loader, so its values
equal the dequantized model's embedding exactly. A tied LM head shares the table, which may then be regrouped
16 rows at a time for decoding (quantization/interleave.py); lookups read either layout.

Saved state dicts (save_pretrained) carry the dequantized table as `weight`, the key every loader expects.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..gguf.dequant import BLOCK_LAYOUT, dequantize
from ..kernels.linear import picked_rows
from . import interleave


class QuantizedEmbedding(nn.Module):
    """blocks: uint8 [num_embeddings, bytes per row] of ggml type `type_name`; outputs are `dtype`."""

    def __init__(self, blocks: Tensor, type_name: str, embedding_dim: int, dtype: torch.dtype):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.type_name = blocks.shape[0], embedding_dim, type_name
        self.register_buffer("blocks", blocks.contiguous())
        # empty, but model.to(dtype) converts it: the output dtype follows the model's
        self.register_buffer("dtype_anchor", torch.empty(0, dtype=dtype), persistent=False)

    def forward(self, input_ids: Tensor) -> Tensor:
        ids = input_ids.reshape(-1)
        values = picked_rows(self.blocks, ids, self.type_name, self.embedding_dim)  # C++: one call a decode step
        if values is None:
            rows = interleave.rows(self.blocks, ids, self.num_embeddings, BLOCK_LAYOUT[self.type_name][1])
            values = dequantize(rows, self.type_name, (rows.shape[0], self.embedding_dim))
        return values.to(self.dtype_anchor.dtype).reshape(*input_ids.shape, self.embedding_dim)

    def dequantized_weight(self) -> Tensor:
        """The whole table as [num_embeddings, embedding_dim] in the output dtype."""
        blocks = interleave.row_major(self.blocks, self.num_embeddings, BLOCK_LAYOUT[self.type_name][1])
        table = dequantize(blocks, self.type_name, (self.num_embeddings, self.embedding_dim))
        return table.to(self.dtype_anchor.dtype)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """keep_vars=True callers (from_pretrained's bookkeeping) see the blocks; a detached state dict
        (save_pretrained) gets the float table under `weight`."""
        if keep_vars:
            super()._save_to_state_dict(destination, prefix, keep_vars)
        else:
            destination[prefix + "weight"] = self.dequantized_weight()

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, type={self.type_name}"
