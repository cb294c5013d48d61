"""Mistral: Llama without biases, every layer attending through a sliding window (the shared default)."""
from __future__ import annotations

from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from .configuration_mistral import MistralConfig


class MistralModel(DecoderModel):
    config_class = MistralConfig


class MistralForCausalLM(DecoderForCausalLM):
    config_class = MistralConfig
    base_model_class = MistralModel
