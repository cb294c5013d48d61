"""The body every attention-free state-space family shares (Mamba-2 here; Mamba and FalconMamba have the
same shape): embeddings -> blocks of h = x + mixer(rms_norm(x)) -> final norm -> LM head, with 4.45's
module names (backbone.embeddings, backbone.layers.N.{norm, mixer}, backbone.norm_f, lm_head), its
`cache_params` argument and output classes, and generate()'s `past_key_values` name for the same cache.

A family supplies its mixer (forward(hidden [B, T, hidden], cache, mask [B, T] or None) -> [B, T, hidden],
reading and writing its layer's state in the cache), its state cache class and its output classes.
The model advances the cache's position counter once per forward, after every layer has used it.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import GenerationError
from ..kernels.linear import float_logits
from ..modeling_utils import PreTrainedModel
from .decoder import causal_lm_loss
from .layers import Linear
from .norms import RMSNorm


class StateSpaceBlock(nn.Module):
    """h = x + mixer(norm(x)); the residual stream in float32 when `residual_in_fp32`."""

    def __init__(self, config, mixer: nn.Module):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = mixer

    def forward(self, hidden_states, cache_params=None, mask=None) -> torch.Tensor:
        residual = hidden_states.float() if self.residual_in_fp32 else hidden_states
        return residual + self.mixer(self.norm(hidden_states.to(self.norm.weight.dtype)), cache_params, mask)


class StateSpaceModel(PreTrainedModel):
    """input ids [B, T] -> final hidden states [B, T, hidden]. Hooks: `make_mixer`, `block_class`,
    `cache_class` (built as cache_class(config, batch, dtype=, device=)), `output_class`."""

    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True
    _is_stateful = True
    block_class: ClassVar[type[nn.Module]] = StateSpaceBlock
    cache_class: ClassVar[type]
    output_class: ClassVar[type]

    @classmethod
    def make_mixer(cls, config, layer_idx: int) -> nn.Module:
        raise NotImplementedError(f"{cls.__name__} must implement make_mixer()")

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([self.block_class(config, self.make_mixer(config, idx))
                                     for idx in range(config.num_hidden_layers)])
        self.norm_f = RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(self, input_ids=None, inputs_embeds=None, cache_params=None, use_cache: bool | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None, cache_position=None,
                attention_mask=None, past_key_values=None, **kwargs: Any):
        """As 4.45. The cache is `cache_params` (or `past_key_values`); it counts the positions it has seen, so
        `cache_position` is accepted and not needed. `attention_mask` may be wider than the input
        (generate()'s running mask): its last T columns are used, for prompts (T > 1) only."""
        if (input_ids is None) == (inputs_embeds is None):
            raise GenerationError(f"{type(self).__name__}.forward: pass exactly one of `input_ids` or `inputs_embeds`")
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        cache = cache_params if cache_params is not None else past_key_values
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if not use_cache:
            cache = None
        elif cache is None:
            cache = self.cache_class(self.config, hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
        length = hidden.shape[1]
        mask = attention_mask[:, -length:] if attention_mask is not None and length > 1 else None
        all_hidden = []
        for block in self.layers:
            if self.gradient_checkpointing and self.training:
                hidden = torch.utils.checkpoint.checkpoint(block, hidden, cache, mask, use_reentrant=False)
            else:
                hidden = block(hidden, cache, mask)
            all_hidden.append(hidden)
        if cache is not None:
            cache.advance(length)
        hidden = self.norm_f(hidden)
        hidden_states = tuple(all_hidden) + (hidden,) if output_hidden_states else None
        out = self.output_class(last_hidden_state=hidden, cache_params=cache, hidden_states=hidden_states)
        return out if return_dict else out.to_tuple()


class StateSpaceForCausalLM(PreTrainedModel):
    """The base model + an LM head: ids [B, T] -> logits [B, T, V] (float32). Hooks: `base_model_class`,
    `output_class`."""

    base_model_prefix = "backbone"
    _is_stateful = True
    _tied_weights_keys = ["lm_head.weight"]
    base_model_class: ClassVar[type[StateSpaceModel]]
    output_class: ClassVar[type]

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def __init__(self, config):
        super().__init__(config)
        self.backbone = self.base_model_class(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)  # formers' decode GEMV

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.backbone.embeddings = value

    def make_generation_cache(self, batch_size: int, max_length: int, device: torch.device, dtype: torch.dtype):
        """generate()'s cache: the recurrent state of `batch_size` rows (its size does not grow with length)."""
        return self.base_model_class.cache_class(self.config, batch_size, dtype=dtype, device=device)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, cache_params=None, labels=None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                use_cache: bool | None = None, cache_position=None, past_key_values=None,
                num_logits_to_keep: int = 0, **kwargs: Any):
        """As 4.45; also takes the cache as `past_key_values` (generate()'s name) and `num_logits_to_keep`
        (0: logits of every position). Position ids and attention outputs do not apply and are ignored."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        base = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds, cache_params=cache_params,
                             past_key_values=past_key_values, use_cache=use_cache,
                             output_hidden_states=output_hidden_states, return_dict=True, attention_mask=attention_mask)
        hidden = base.last_hidden_state[:, -num_logits_to_keep:]
        weight = self.lm_head.weight  # (4.45 casts to it; a quantized head's integer blocks take the hidden as is)
        logits = float_logits(self.lm_head(hidden.to(weight.dtype) if weight.is_floating_point() else hidden))
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        out = self.output_class(loss=loss, logits=logits, cache_params=base.cache_params,
                                hidden_states=base.hidden_states)
        return out if return_dict else out.to_tuple()
