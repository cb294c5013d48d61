"""mBART: BART with pre-norm layers, a final LayerNorm on each stack, and labels shifted by wrapping each
row's last real token (its language code) round to the front."""
from __future__ import annotations

import torch

from ..bart.modeling_bart import BartForCausalLM, BartForConditionalGeneration, BartModel
from .configuration_mbart import MBartConfig


class MBartModel(BartModel):
    config_class = MBartConfig
    pre_norm = True

    def default_decoder_inputs(self, input_ids: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right_wrapped(input_ids, self.config.pad_token_id)


def shift_tokens_right_wrapped(labels: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """labels [B, T] -> decoder inputs: each row's last non-pad token first, then the labels shifted right."""
    ids = labels.masked_fill(labels == -100, pad_token_id)
    last = ids.ne(pad_token_id).sum(dim=1, keepdim=True) - 1
    shifted = ids.roll(1, dims=1)
    shifted[:, :1] = ids.gather(1, last)
    return shifted


class MBartForConditionalGeneration(BartForConditionalGeneration):
    config_class = MBartConfig
    base_model_class = MBartModel

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right_wrapped(labels, self.config.pad_token_id)


class MBartForCausalLM(BartForCausalLM):
    config_class = MBartConfig
    base_model_class = MBartModel
