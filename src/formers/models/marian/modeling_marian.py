"""Marian (Opus-MT): BART-style post-norm layers without an embedding norm, fixed sinusoidal positions
counted from 0 (sin features in the first half, cos in the second; not saved in checkpoints), optional
sqrt(d_model) embedding scale, a `final_logits_bias`, pad as the decoder start token. formers supports the
shared source/target vocabulary (`share_encoder_decoder_embeddings=True`, every Opus-MT checkpoint's)."""
from __future__ import annotations

import torch

from ...loading.key_map import KeyMap
from ...modeling.seq2seq import Seq2SeqStack
from ..bart.modeling_bart import (
    BartForCausalLM,
    BartForConditionalGeneration,
    BartModel,
    bart_key_map,
)
from .configuration_marian import MarianConfig


def marian_sinusoidal_table(num_positions: int, dim: int, device="cpu") -> torch.Tensor:
    """[N, dim] float32: angle(pos, j) = pos / 10000^(2*(j//2)/dim); sin of the even j first, cos of the odd j
    after (computed in float64, as 4.45's numpy table)."""
    j = torch.arange(dim, dtype=torch.float64, device=device)
    angles = torch.arange(num_positions, dtype=torch.float64, device=device)[:, None] / \
        torch.pow(torch.tensor(10000.0, dtype=torch.float64, device=device), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    return torch.cat([torch.sin(angles[:, 0::2]), torch.cos(angles[:, 1::2])], dim=1).float()


class MarianStack(Seq2SeqStack):
    def __init__(self, config, is_decoder: bool, layers, norm, embed):
        super().__init__(config, is_decoder, layers, norm, embed)
        self.register_buffer("position_table", marian_sinusoidal_table(config.max_position_embeddings, config.d_model),
                             persistent=False)

    def embed_inputs(self, hidden: torch.Tensor, input_ids: torch.Tensor | None, cache_position: torch.Tensor,
                     total_length: int) -> torch.Tensor:
        self.check_length(total_length, self.config.max_position_embeddings)
        hidden = hidden + self.position_table[cache_position].to(hidden.dtype)
        return torch.nn.functional.dropout(hidden, self.config.dropout, self.training)


def _marian_keys() -> KeyMap:
    base = bart_key_map()
    return KeyMap(prefix=base.prefix, renames=base.renames,
                  ignored=base.ignored + ("encoder.embed_positions.weight", "decoder.embed_positions.weight"))


class MarianModel(BartModel):
    config_class = MarianConfig
    checkpoint_keys = _marian_keys()
    stack_class = MarianStack


class MarianMTModel(BartForConditionalGeneration):
    config_class = MarianConfig
    base_model_class = MarianModel
    checkpoint_keys = _marian_keys()


class MarianForCausalLM(BartForCausalLM):
    config_class = MarianConfig
    base_model_class = MarianModel
    checkpoint_keys = KeyMap(prefix="model", renames=bart_key_map().renames, ignored=("decoder.embed_positions.weight",))
