"""mBART: BART with pre-norm layers, a final LayerNorm on each stack, and labels shifted by wrapping each
row's last real token (its language code) round to the front."""
from __future__ import annotations

import torch

from ..bart.configuration_bart import BartStyleConfig
from ..bart.modeling_bart import BartForConditionalGeneration, BartModel


class MBartConfig(BartStyleConfig):
    model_type = "mbart"
    classifier_dropout: float = 0.0
    forced_eos_token_id: int | None = 2
    decoder_start_token_id: int | None = None


class MBartModel(BartModel):
    config_class = MBartConfig
    pre_norm = True


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


CONFIG_CLASS = MBartConfig
MODEL_CLASSES = {"base": MBartModel, "seq2seq_lm": MBartForConditionalGeneration}
__all__ = ["MBartConfig", "MBartForConditionalGeneration", "MBartModel"]
