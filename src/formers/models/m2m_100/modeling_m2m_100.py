"""M2M100 and NLLB (model_type m2m_100): BART-style pre-norm layers with a final LayerNorm per stack, a ReLU
feed-forward, token embeddings scaled by sqrt(d_model), and fixed sinusoidal positions counted from the
ids (pads keep the padding position; real tokens count on from it). No embedding norm, no logits bias."""
from __future__ import annotations

import math

import torch

from ...modeling.seq2seq import Seq2SeqForConditionalGeneration, Seq2SeqStack
from ..bart.modeling_bart import BartModel, bart_key_map
from .configuration_m2m_100 import M2M100Config

POSITION_OFFSET = 2


def sinusoidal_table(num_positions: int, dim: int, padding_idx: int | None, device="cpu") -> torch.Tensor:
    """[N, dim] float32: sin of position * 10000^(-i/(dim/2-1)) in the first half, cos in the second; the
    padding row is zero (fairseq's table)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float, device=device) * -(math.log(10000) / (half - 1)))
    angles = torch.arange(num_positions, dtype=torch.float, device=device)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions, 1, device=device)], dim=1)
    if padding_idx is not None:
        table[padding_idx] = 0
    return table


class M2M100Stack(Seq2SeqStack):
    def __init__(self, config, is_decoder: bool, layers, norm, embed):
        super().__init__(config, is_decoder, layers, norm, embed)
        table = sinusoidal_table(config.max_position_embeddings + POSITION_OFFSET, config.d_model, config.pad_token_id)
        self.register_buffer("position_table", table, persistent=False)  # built on the CPU even under meta

    def embed_inputs(self, hidden: torch.Tensor, input_ids: torch.Tensor | None, cache_position: torch.Tensor,
                     total_length: int) -> torch.Tensor:
        pad = self.config.pad_token_id
        if input_ids is not None:  # real tokens count from pad + 1 on; pads stay at the (zero) padding row
            real = input_ids.ne(pad).long()
            positions = (real.cumsum(dim=1) + cache_position[:1]) * real + pad
        else:
            positions = (cache_position + pad + 1)[None].expand(hidden.shape[0], -1)
        table = self.position_table
        needed = total_length + pad + 1  # an upper bound on the positions above, known on the host
        if needed > table.shape[0]:  # longer than the table: extend it, as 4.45 does
            table = sinusoidal_table(needed + POSITION_OFFSET, self.config.d_model, pad, hidden.device)
            self.position_table = table
        return hidden + table[positions].to(hidden.dtype)


    def forward(self, *args, **kwargs):
        # 4.45 draws one layerdrop number per layer on every forward, even in eval: drawing them too keeps
        # the global RNG (and so seeded sampling) in step with it
        for _ in self.layers:
            torch.rand([])
        return super().forward(*args, **kwargs)


class M2M100Model(BartModel):
    config_class = M2M100Config
    checkpoint_keys = bart_key_map()
    pre_norm = True
    stack_class = M2M100Stack


class M2M100ForConditionalGeneration(Seq2SeqForConditionalGeneration):
    config_class = M2M100Config
    base_model_class = M2M100Model
    checkpoint_keys = bart_key_map()
