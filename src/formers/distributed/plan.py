"""The tensor-parallel plan: which weights each rank keeps, applied to a model built on the meta device.

Every decoder family is built from the same blocks (modeling/), so the plan is stated once per block and
holds for every family made of them:
  Attention      q/k/v (or fused qkv) column-parallel by whole heads: rank r keeps query heads
                 [r*H/W, (r+1)*H/W) and the KV heads they read; with fewer KV heads than ranks
                 (W % Hkv == 0) each KV head is replicated, rank r keeping head r // (W / Hkv).
                 o_proj row-parallel over the same heads; one all-reduce on the block's output.
  GatedMLP/MLP   gate/up (or fused gate_up) column-parallel, down row-parallel; one all-reduce.
  SparseMoeBlock router (and shared-expert gate) replicated; every expert and the shared expert split
                 like a GatedMLP without their own reduce: the block's output is a sum of the ranks'
                 partials (routing weights scale linearly), so one all-reduce per MoE block.
  embed_tokens / lm_head  vocabulary-parallel (layers.py); a tied head keeps the embedding's rows.
Norms, rotary tables and routers are replicated. `shard_model` swaps the meta modules for local-shaped
ones in place and returns, for every parameter name, the `Slice` of the checkpoint tensor it holds.
The config keeps describing the whole model (save_pretrained, generation defaults); fixed-shape caches
read this rank's KV head count from `config._tp_local_kv_heads` (not serialised).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..modeling.attention import Attention
from ..modeling.layers import Embedding, Linear
from ..modeling.mlp import MLP, GatedMLP
from ..modeling.moe import SparseMoeBlock
from .group import RankInfo
from .layers import VocabParallelEmbedding, VocabParallelLMHead, reduce_attention_output, reduce_block_output, vocab_shard

TP_PLANS = ("auto",)
Range = tuple[int, int]


@dataclass(frozen=True)
class Slice:
    """The part of a checkpoint tensor one rank holds: `rows` ranges of dim 0 laid end to end, or the
    `cols` range of dim 1, or `zeros` (a row-parallel bias off rank 0); all None/False: the whole tensor."""

    rows: tuple[Range, ...] | None = None
    cols: Range | None = None
    zeros: bool = False


class _Sharder:
    def __init__(self, info: RankInfo, family: str):
        self.info, self.family = info, family
        self.slices: dict[str, Slice] = {}

    def _even(self, size: int, what: str) -> Range:
        world, rank = self.info.world_size, self.info.rank
        if size % world:
            raise ConfigError(f"tp_plan='auto': {self.family}'s {what} ({size}) is not divisible by the world "
                              f"size ({world}); run with a world size that divides it")
        part = size // world
        return rank * part, (rank + 1) * part

    def column(self, parent: nn.Module, name: str, prefix: str, rows: tuple[Range, ...]) -> None:
        """Replace `parent.name` by a Linear holding the output rows `rows` of the full one."""
        full: nn.Linear = getattr(parent, name)
        out = sum(b - a for a, b in rows)
        with torch.device("meta"):
            setattr(parent, name, Linear(full.in_features, out, bias=full.bias is not None))
        self.slices[f"{prefix}{name}.weight"] = Slice(rows=rows)
        if full.bias is not None:
            self.slices[f"{prefix}{name}.bias"] = Slice(rows=rows)

    def row(self, parent: nn.Module, name: str, prefix: str, cols: Range) -> None:
        """Replace `parent.name` by a Linear over the input columns `cols` (bias kept on rank 0 only)."""
        full: nn.Linear = getattr(parent, name)
        with torch.device("meta"):
            setattr(parent, name, Linear(cols[1] - cols[0], full.out_features, bias=full.bias is not None))
        self.slices[f"{prefix}{name}.weight"] = Slice(cols=cols)
        if full.bias is not None:
            self.slices[f"{prefix}{name}.bias"] = Slice(zeros=self.info.rank != 0)

    # --- blocks --------------------------------------------------------------------------------
    def attention(self, attn: Attention, prefix: str) -> None:
        spec, world, rank = attn.spec, self.info.world_size, self.info.rank
        heads, kv_heads, dim = attn.num_heads, attn.num_kv_heads, attn.head_dim
        if spec.qk_norm is not None and not spec.qk_norm_per_head:
            raise ConfigError(f"tp_plan='auto': {self.family} normalises q/k over all heads at once "
                              "(qk_norm_per_head=False); it has no tensor-parallel plan")
        if spec.qk_norm is not None and any(p.numel() > dim for p in attn.q_norm.parameters()):
            raise ConfigError(f"tp_plan='auto': {self.family} has per-head q/k norm weights; no tensor-parallel plan")
        q0, q1 = self._even(heads, "num_attention_heads")
        if kv_heads % world == 0:
            k0, k1 = self._even(kv_heads, "num_key_value_heads")
        elif world % kv_heads == 0:  # fewer KV heads than ranks: each is replicated on world / Hkv ranks
            k0 = rank // (world // kv_heads)
            k1 = k0 + 1
        else:
            raise ConfigError(f"tp_plan='auto': num_key_value_heads ({kv_heads}) and the world size ({world}) "
                              "must divide one another")
        q, kv = (q0 * dim, q1 * dim), (k0 * dim, k1 * dim)
        if spec.fused_qkv:
            q_size, kv_size = heads * dim, kv_heads * dim
            self.column(attn, "qkv_proj", prefix, (q, (q_size + kv[0], q_size + kv[1]),
                                                   (q_size + kv_size + kv[0], q_size + kv_size + kv[1])))
            attn.qkv_sizes = (q[1] - q[0], kv[1] - kv[0], kv[1] - kv[0])
        else:
            self.column(attn, "q_proj", prefix, (q,))
            self.column(attn, "k_proj", prefix, (kv,))
            self.column(attn, "v_proj", prefix, (kv,))
        self.row(attn, "o_proj", prefix, q)
        attn.num_heads, attn.num_kv_heads = q1 - q0, k1 - k0

    def feed_forward(self, mlp: nn.Module, prefix: str, what: str) -> None:
        if isinstance(mlp, GatedMLP):
            size = mlp.down_proj.in_features
            cols = self._even(size, f"{what} intermediate size")
            if mlp.fused:
                self.column(mlp, "gate_up_proj", prefix, (cols, (size + cols[0], size + cols[1])))
            else:
                self.column(mlp, "gate_proj", prefix, (cols,))
                self.column(mlp, "up_proj", prefix, (cols,))
        elif type(mlp) is MLP:
            cols = self._even(mlp.down_proj.in_features, f"{what} intermediate size")
            self.column(mlp, "up_proj", prefix, (cols,))
        else:
            raise ConfigError(f"tp_plan='auto': {self.family}'s {what} is a {type(mlp).__name__}, which has no "
                              "tensor-parallel plan")
        self.row(mlp, "down_proj", prefix, cols)

    def moe(self, block: SparseMoeBlock, prefix: str) -> None:
        for idx, expert in enumerate(block.experts):
            self.feed_forward(expert, f"{prefix}experts.{idx}.", "expert")
        if block.shared_expert is not None:
            self.feed_forward(block.shared_expert, f"{prefix}shared_expert.", "shared expert")

    def vocabulary(self, model: nn.Module) -> None:
        base, vocab = model.model, model.config.vocab_size
        start, rows, shard = vocab_shard(vocab, self.info.rank, self.info.world_size)
        embed = base.embed_tokens
        if type(embed) is not Embedding or embed.num_embeddings != vocab:
            raise ConfigError(f"tp_plan='auto': {self.family}'s token embedding has no tensor-parallel plan")
        with torch.device("meta"):
            base.embed_tokens = VocabParallelEmbedding(rows, embed.embedding_dim, start, embed.padding_idx)
        self.slices["model.embed_tokens.weight"] = Slice(rows=((start, start + rows),))
        head = model.lm_head
        if type(head) is not Linear or head.out_features != vocab:
            raise ConfigError(f"tp_plan='auto': {self.family}'s LM head has no tensor-parallel plan")
        with torch.device("meta"):
            model.lm_head = VocabParallelLMHead(head.in_features, rows, shard, vocab, bias=head.bias is not None)
        self.slices["lm_head.weight"] = Slice(rows=((start, start + rows),))
        if head.bias is not None:
            self.slices["lm_head.bias"] = Slice(rows=((start, start + rows),))


def shard_model(model: nn.Module, tp_plan: str, info: RankInfo) -> dict[str, Slice]:
    """Shard a meta-device decoder model in place for `info`'s rank; return each sharded parameter's Slice
    (parameters not named are replicated). Raises ConfigError for a model or world size with no plan."""
    family = type(model).__name__
    if tp_plan not in TP_PLANS:
        raise ConfigError(f"tp_plan: expected one of {TP_PLANS}, got {tp_plan!r}")
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if layers is None or not hasattr(model, "lm_head") or getattr(base, "has_score_bias", True):
        raise ConfigError(f"tp_plan='auto': {family} has no tensor-parallel plan (only decoder families with "
                          "rotary or learned positions, not ALiBi or state-space models)")
    sharder = _Sharder(info, family)
    kv_heads = set()
    for idx, layer in enumerate(layers):
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if type(attn) is not Attention:
            raise ConfigError(f"tp_plan='auto': {family}'s attention ({type(attn).__name__}) has no tensor-parallel plan")
        sharder.attention(attn, f"model.layers.{idx}.self_attn.")
        kv_heads.add(attn.num_kv_heads)
        if isinstance(mlp, SparseMoeBlock):
            sharder.moe(mlp, f"model.layers.{idx}.mlp.")
        else:
            sharder.feed_forward(mlp, f"model.layers.{idx}.mlp.", "MLP")
        attn.register_forward_hook(reduce_attention_output)
        mlp.register_forward_hook(reduce_block_output)
    sharder.vocabulary(model)
    if len(kv_heads) == 1:
        model.config._tp_local_kv_heads = kv_heads.pop()
    model._tp_rank_info = info
    return sharder.slices
