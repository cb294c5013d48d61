"""Layers of a tensor-parallel model that differ from the one-process ones.

Column- and row-parallel linears need no class of their own: a column-parallel linear is a `Linear` with
this rank's output rows, a row-parallel one a `Linear` with this rank's input columns whose partial
outputs the block's hook sums over ranks (`reduce_block_output`); its bias is loaded on rank 0 only (zeros
elsewhere), so the sum adds it once. The vocabulary is split into equal shards of ceil(V / W) rows (the
last rank may hold fewer real rows):
  VocabParallelEmbedding  each rank looks up the ids in its shard, zeros elsewhere; one all-reduce sums them
  VocabParallelLMHead     each rank scores its shard; one all-gather joins the logits (padding cut off)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.layers import Linear
from .group import all_gather_dim, all_gather_last, all_reduce_sum


def vocab_shard(vocab_size: int, rank: int, world_size: int) -> tuple[int, int, int]:
    """(first row, rows held, shard size) of `rank`'s slice of a vocabulary split `world_size` ways."""
    shard = -(-vocab_size // world_size)
    start = min(rank * shard, vocab_size)
    return start, min(shard, vocab_size - start), shard


class VocabParallelEmbedding(nn.Module):
    """ids [B, T] -> embeddings [B, T, C]; `weight` holds rows [start, start + rows) of the full table."""

    def __init__(self, rows: int, embedding_dim: int, start: int, padding_idx: int | None = None):
        super().__init__()
        self.start, self.rows, self.embedding_dim, self.padding_idx = start, rows, embedding_dim, padding_idx
        self.weight = nn.Parameter(torch.empty(rows, embedding_dim), requires_grad=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        local = input_ids - self.start
        outside = (local < 0) | (local >= self.rows)
        out = F.embedding(local.masked_fill(outside, 0), self.weight) if self.rows else \
            self.weight.new_zeros(*input_ids.shape, self.embedding_dim)
        return all_reduce_sum(out.masked_fill(outside.unsqueeze(-1), 0.0), "the token embedding")

    def extra_repr(self) -> str:
        return f"rows [{self.start}, {self.start + self.rows}), {self.embedding_dim}"


class VocabParallelLMHead(Linear):
    """hidden [..., C] -> logits [..., V] from this rank's `weight` rows (a tied head: the embedding's)."""

    def __init__(self, in_features: int, rows: int, shard: int, vocab_size: int, bias: bool = False):
        super().__init__(in_features, rows, bias=bias)
        self.shard, self.vocab_size = shard, vocab_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        if logits.shape[-1] < self.shard:  # the last rank's short shard: pad so every rank sends one shape
            logits = F.pad(logits, (0, self.shard - logits.shape[-1]))
        return all_gather_last(logits, "the LM head")[..., : self.vocab_size]


def reduce_attention_output(module: nn.Module, args, output):
    """Forward hook on an Attention: sum the row-parallel o_proj partials; gather weights by head."""
    out, weights = output
    what = f"attention of layer {module.layer_idx}"
    out = all_reduce_sum(out, what)
    if weights is not None:
        weights = all_gather_dim(weights, 1, what)
    return out, weights


def reduce_block_output(module: nn.Module, args, output):
    """Forward hook on an MLP or MoE block: sum the partial outputs (router logits are the same everywhere)."""
    if isinstance(output, tuple):
        return (all_reduce_sum(output[0], "an MLP/MoE block"), *output[1:])
    return all_reduce_sum(output, "an MLP block")
