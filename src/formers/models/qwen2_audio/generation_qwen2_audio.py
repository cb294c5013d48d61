"""generate() for Qwen2-Audio: the shared strategies drive the language model through `AudioPromptView`,
which merges the audio into the prompt once (GenerationMixin.merge_prompt_media, after the lengths are fixed
from the ids); decode steps feed only the new tokens. The strategies return the new tokens of such a merged
(embeds) prompt, so the prompt ids are put back in front, as 4.45 returns them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ...errors import GenerationError
from ...generation.utils import GenerationMixin

if TYPE_CHECKING:
    from .modeling_qwen2_audio import Qwen2AudioForConditionalGeneration


def generate_with_audio(model, inputs: torch.Tensor | None, generation_config, **kwargs: Any):
    """`Qwen2AudioForConditionalGeneration.generate` (same arguments as 4.45's)."""
    input_features = kwargs.pop("input_features", None)
    feature_attention_mask = kwargs.pop("feature_attention_mask", None)
    config = generation_config if generation_config is not None else model.generation_config
    if kwargs.get("cache_implementation") or (config is not None and config.cache_implementation):
        raise GenerationError("Qwen2-Audio: cache_implementation is not supported (as in transformers 4.45); "
                              "generate with the default dynamic cache")
    input_ids = inputs if inputs is not None else kwargs.pop("input_ids", None)
    view = AudioPromptView(model, input_features, feature_attention_mask)
    result = GenerationMixin.generate(view, input_ids, generation_config, **kwargs)
    if view.offset == 0 or input_ids is None:
        return result
    sequences = result if isinstance(result, torch.Tensor) else result.sequences
    prompt = input_ids.to(sequences.device).repeat_interleave(sequences.shape[0] // input_ids.shape[0], dim=0)
    sequences = torch.cat([prompt, sequences], dim=-1)  # the strategies return only new tokens past embeds
    if isinstance(result, torch.Tensor):
        return sequences
    result.sequences = sequences
    return result


class AudioPromptView(GenerationMixin):
    """The language model as generate() drives it, with the audio merged into the prompt at prefill
    (`merge_prompt_media`); every other call goes to the language model."""

    def __init__(self, model: Qwen2AudioForConditionalGeneration, input_features, feature_attention_mask):
        self.outer, self.model = model, model.language_model
        self.config, self.generation_config = model.language_model.config, model.generation_config
        self.input_features, self.feature_attention_mask = input_features, feature_attention_mask
        self.offset = 0  # merged prompt width - prompt ids

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def make_generation_cache(self, batch_size: int, max_length: int, device, dtype):
        return self.model.make_generation_cache(batch_size, max_length, device, dtype)

    def needs_cache_refill(self, cached_length: int, total_length: int) -> bool:
        return self.model.needs_cache_refill(cached_length, total_length)

    def merge_prompt_media(self, prompt) -> None:
        if self.input_features is None or prompt.input_ids.shape[1] == 0:
            return
        embeds = self.model.get_input_embeddings()(prompt.input_ids)
        merged = self.outer.merge_audio(prompt.input_ids, embeds, prompt.attention_mask, self.input_features,
                                        self.feature_attention_mask)
        prompt.inputs_embeds, prompt.attention_mask = merged.inputs_embeds, merged.attention_mask
        self.offset = merged.inputs_embeds.shape[1] - prompt.input_ids.shape[1]

    def __call__(self, **kwargs: Any):
        return self.model(**kwargs)
