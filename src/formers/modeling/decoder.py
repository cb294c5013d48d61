"""The decoder-only transformer every dense family is built from.

A family states its parts by overriding hooks, never by flags in here:
  - `DecoderModel.layer_spec(config, idx)`: that layer's attention (`AttentionSpec`: heads, biases,
    score scale, softcap, window, rotary style, q/k norms);
  - `make_norm(config)`, `make_mlp(config, idx)`, `residual` (the wiring below), or `make_layer` whole;
  - `make_rotary(config)` (None: no rotary), `rotary_tables` (how it is called: Phi3), `embed_inputs` (embedding
    scale, learned positions, an embedding norm), `score_bias` (ALiBi: an additive [B, H, T, S] term on every
    layer's scores);
  - `DecoderForCausalLM.make_lm_head(config)` and `final_logits` (logit scale or softcap);
  - `checkpoint_keys` (loading/key_map.py): how checkpoint keys map onto these modules.
Residual wiring (`DecoderLayer.residual`):
  "sequential" h += attn(ln1(h)); h += mlp(ln2(h))           Llama, GPT-2, Bloom, ...
  "sequential_normed"  h = ln1(h) + attn(ln1(h)); h = ln2(h) + mlp(ln2(h))   Bloom's post-LN residual option
  "parallel"   n = ln1(h); h += attn(n) + mlp(n)             Phi, GPT-J, Falcon-7B
  "parallel_residual_first"  the same summed as h + attn + mlp (not attn + mlp + h): Cohere, StableLM (bf16-exact)
  "parallel2"  h += attn(ln1(h)) + mlp(ln2(h))               GPT-NeoX, Falcon-40B
  "sandwich"   h += ln2(attn(ln1(h))); h += ln4(mlp(ln3(h)))  Gemma2
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..cache import Cache
from ..errors import ConfigError, GenerationError
from ..kernels.decode import decode_layer, decode_stack, pack_for_decoding, registrations
from ..kernels.linear import float_logits
from ..modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from ..modeling_utils import PreTrainedModel
from .attention import Attention, AttentionSpec
from .layers import Embedding, Linear
from .masks import build_attention_mask
from .mlp import GatedMLP
from .norms import RMSNorm
from .rope import RotaryEmbedding

RESIDUALS = ("sequential", "sequential_normed", "parallel", "parallel_residual_first", "parallel2", "sandwich")


class DecoderLayer(nn.Module):
    """hidden [B, T, C] -> [B, T, C]: attention and MLP joined by the family's residual wiring.

    `norm` builds one norm; `branch_scale` multiplies each branch before it joins the residual (Granite).
    """

    def __init__(self, attention: nn.Module, mlp: nn.Module, norm, residual: str = "sequential",
                 branch_scale: float = 1.0):
        super().__init__()
        if residual not in RESIDUALS:
            raise ConfigError(f"DecoderLayer residual: expected one of {RESIDUALS}, got {residual!r}")
        self.residual, self.branch_scale = residual, branch_scale
        self.self_attn, self.mlp = attention, mlp
        self.input_layernorm = norm()
        if not residual.startswith("parallel") or residual == "parallel2":
            self.post_attention_layernorm = norm()
        if residual == "sandwich":
            self.pre_feedforward_layernorm = norm()
            self.post_feedforward_layernorm = norm()

    def _join(self, hidden: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return hidden + (branch if self.branch_scale == 1.0 else branch * self.branch_scale)

    def _feed_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The MLP's output and its router logits [B*T, E]: a mixture-of-experts block returns both as a
        tuple (modeling/moe.py), a dense MLP only the output (router logits None)."""
        out = self.mlp(x)
        return out if isinstance(out, tuple) else (out, None)

    def forward(self, hidden, cos, sin, mask, cache, cache_position, output_attentions=False):
        """-> (hidden [B, T, C], attention weights or None, router logits [B*T, E] or None)."""
        fused = decode_layer(self, hidden, cos, sin, mask, cache, output_attentions)  # one call per layer (kernels/)
        if fused is not None:
            return fused
        normed = self.input_layernorm(hidden)
        attn_out, weights = self.self_attn(normed, cos, sin, mask, cache, cache_position, output_attentions)
        if self.residual == "sequential":
            hidden = self._join(hidden, attn_out)
            mlp_out, router_logits = self._feed_forward(self.post_attention_layernorm(hidden))
            hidden = self._join(hidden, mlp_out)
        elif self.residual == "sequential_normed":
            hidden = normed + attn_out
            normed = self.post_attention_layernorm(hidden)
            mlp_out, router_logits = self._feed_forward(normed)
            hidden = normed + mlp_out
        elif self.residual == "parallel":
            mlp_out, router_logits = self._feed_forward(normed)
            hidden = attn_out + mlp_out + hidden
        elif self.residual == "parallel_residual_first":
            mlp_out, router_logits = self._feed_forward(normed)
            hidden = hidden + attn_out + mlp_out
        elif self.residual == "parallel2":
            mlp_out, router_logits = self._feed_forward(self.post_attention_layernorm(hidden))
            hidden = attn_out + mlp_out + hidden
        else:  # sandwich
            hidden = self._join(hidden, self.post_attention_layernorm(attn_out))
            mlp_out, router_logits = self._feed_forward(self.pre_feedforward_layernorm(hidden))
            hidden = self._join(hidden, self.post_feedforward_layernorm(mlp_out))
        return hidden, weights, router_logits


class DecoderModel(PreTrainedModel):
    """input ids [B, T] -> hidden states [B, T, C] (the family's `XModel`)."""

    residual: ClassVar[str] = "sequential"
    output_class: ClassVar[type] = BaseModelOutputWithPast  # MoE families: MoeModelOutputWithPast

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(self.make_layer(config, idx) for idx in range(config.num_hidden_layers))
        self.norm = self.make_norm(config)
        self.rotary_emb = self.make_rotary(config)

    # --- family hooks ------------------------------------------------------------------------
    @staticmethod
    def layer_spec(config, layer_idx: int) -> AttentionSpec:
        """The attention of layer `layer_idx`; its window comes from `config.layer_sliding_window`."""
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             sliding_window=config.layer_sliding_window(layer_idx))

    @classmethod
    def make_norm(cls, config) -> nn.Module:
        return RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    @classmethod
    def make_mlp(cls, config, layer_idx: int) -> nn.Module:
        return GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act,
                        bias=vars(config).get("mlp_bias", False))

    @classmethod
    def make_attention(cls, config, layer_idx: int) -> nn.Module:
        return Attention(config.hidden_size, cls.layer_spec(config, layer_idx), layer_idx,
                         dropout=config.attention_dropout, implementation=config._attn_implementation or "sdpa")

    @classmethod
    def make_layer(cls, config, layer_idx: int) -> nn.Module:
        return DecoderLayer(cls.make_attention(config, layer_idx), cls.make_mlp(config, layer_idx),
                            lambda: cls.make_norm(config), cls.residual)

    @classmethod
    def make_rotary(cls, config) -> nn.Module | None:
        return RotaryEmbedding(config, device=torch.device("cpu"))

    def default_position_ids(self, attention_mask: torch.Tensor | None, cache_position: torch.Tensor) -> torch.Tensor:
        """Positions [B or 1, T] when the caller gives none: the cache positions (families that count
        positions from the attention mask, as GPTBigCode does, override this)."""
        return cache_position.unsqueeze(0)

    def rotary_tables(self, hidden: torch.Tensor, position_ids: torch.Tensor,
                      cache_position: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(cos, sin) [B, T, Drot] shared by every layer, or (None, None) without rotary. `cache_position` [T]
        tells how long the attended sequence is (Phi3's longrope picks its factors by that length)."""
        return self.rotary_emb(hidden, position_ids) if self.rotary_emb is not None else (None, None)

    def embed_inputs(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings [B, T, C] -> the first layer's input (also applied to user `inputs_embeds`)."""
        return inputs_embeds

    def score_bias(self, attention_mask: torch.Tensor | None, key_positions: torch.Tensor,
                   dtype: torch.dtype) -> torch.Tensor | None:
        """An additive term [B, H, 1, S] on every layer's attention scores (ALiBi), or None."""
        return None

    has_score_bias: ClassVar[bool] = False  # True when `score_bias` returns a tensor (masks become explicit)

    # --- the forward pass ----------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def _attention_masks(self, attention_mask, cache_position, cache: Cache | None, length: int, dtype,
                         output_attentions: bool) -> list:
        """The mask of every layer, built once per (sliding window, cache layout) pair; the cache says how
        its key slots map to positions. `length` is the query length with a cache, the key length without."""
        implicit = self.config._attn_implementation != "eager" and not output_attentions and not self.has_score_bias
        built, masks = {}, []
        windows = self._sliding_windows()
        for idx, window in enumerate(windows):
            group = (window, cache.layer_kind(idx) if cache is not None else None)
            if group not in built:
                if cache is None:
                    key_length, key_positions = length, None
                else:
                    key_length = cache.attention_key_length(length, idx)
                    key_positions = cache.key_positions(cache_position, idx)
                mask = build_attention_mask(attention_mask, cache_position, key_length, dtype, window,
                                            allow_implicit_causal=implicit, key_positions=key_positions)
                if self.has_score_bias:
                    positions = key_positions if key_positions is not None else \
                        torch.arange(key_length, device=cache_position.device)
                    mask = mask + self.score_bias(attention_mask, positions, dtype)
                built[group] = mask
            masks.append(built[group])
        return masks

    def _sliding_windows(self) -> tuple:
        """Each layer's attention window (None: global), read once per model structure: walking the layers'
        modules costs more than the masks themselves in a decode step. A module assigned anywhere since (a layer
        or its attention swapped) makes it read them again."""
        known = self.__dict__.get("_formers_sliding_windows")
        if known is None or known[0] != registrations():
            known = registrations(), tuple(layer.self_attn.sliding_window for layer in self.layers)
            self.__dict__["_formers_sliding_windows"] = known
        return known[1]

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None, output_router_logits: bool = False, **kwargs):
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        use_cache = (config.use_cache and not self.training) if use_cache is None else use_cache
        return_dict = config.return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise GenerationError("forward: pass exactly one of `input_ids` or `inputs_embeds`")
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds

        return_legacy_cache = use_cache and not isinstance(past_key_values, Cache)
        if return_legacy_cache:  # None or legacy tuples, as transformers accepts
            past_key_values = self.cache_from_legacy(past_key_values)
        cache = past_key_values if use_cache else None
        query_length = hidden.shape[1]
        if cache_position is None or cache is None:  # a static cache's length is a device read: only here
            past_length = past_key_values.get_seq_length() if isinstance(past_key_values, Cache) else 0
        if cache_position is None:
            cache_position = torch.arange(past_length, past_length + query_length, device=hidden.device)
        if position_ids is None:
            position_ids = self.default_position_ids(attention_mask, cache_position)
        hidden = self.embed_inputs(hidden, position_ids)
        masks = self._attention_masks(attention_mask, cache_position, cache,
                                      query_length if cache is not None else past_length + query_length,
                                      hidden.dtype, output_attentions)
        cos, sin = self.rotary_tables(hidden, position_ids, cache_position)
        all_hidden, all_attentions, all_router_logits = [], [], []
        fused = decode_stack(self.layers, hidden, cos, sin, masks, cache,  # every layer's C++ kernel and the norm
                             output_hidden_states or output_attentions or output_router_logits, self.norm)
        for layer, mask in zip(self.layers, masks) if fused is None else ():  # (kernels/decode.py)
            if output_hidden_states:
                all_hidden.append(hidden)
            hidden, weights, router_logits = layer(hidden, cos, sin, mask, cache, cache_position, output_attentions)
            if output_attentions:
                all_attentions.append(weights)
            if output_router_logits and router_logits is not None:  # dense layers of an MoE model route nothing
                all_router_logits.append(router_logits)
        hidden = self.norm(hidden) if fused is None else fused
        if output_hidden_states:
            all_hidden.append(hidden)

        next_cache = None
        if use_cache:
            next_cache = self.cache_to_legacy(past_key_values) if return_legacy_cache else past_key_values
        routed = {"router_logits": tuple(all_router_logits)} if output_router_logits else {}
        out = self.output_class(
            last_hidden_state=hidden, past_key_values=next_cache,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None, **routed,
        )
        return out if return_dict else out.to_tuple()


class DecoderForCausalLM(PreTrainedModel):
    """Decoder + LM head: input ids [B, T] -> next-token logits [B, T, V] (float32)."""

    base_model_class: type[DecoderModel] = DecoderModel
    _tied_weights_keys = ["lm_head.weight"]

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def __init__(self, config):
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.vocab_size = config.vocab_size
        self.lm_head = self.make_lm_head(config)

    # --- family hooks ------------------------------------------------------------------------
    @classmethod
    def make_lm_head(cls, config) -> nn.Module:
        return Linear(config.hidden_size, config.vocab_size, bias=False)

    def final_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The LM head's output -> the logits the family reports (a scale or softcap; before the float cast)."""
        return logits

    # --- the forward pass ----------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache_position=None, num_logits_to_keep: int = 0,
                **kwargs):
        return_dict = self.config.return_dict if return_dict is None else return_dict
        pack_for_decoding(self)  # once: the weights into huge pages for the CPU decode kernels (kernels/decode.py)
        base = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                          output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                          return_dict=True, cache_position=cache_position)
        hidden = base.last_hidden_state
        logits = float_logits(self.final_logits(self.lm_head(hidden[:, -num_logits_to_keep:, :])))  # 0 keeps all
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        out = CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=base.past_key_values,
                                     hidden_states=base.hidden_states, attentions=base.attentions)
        return out if return_dict else out.to_tuple()


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from position t; `ignore_index` labels are skipped."""
    shifted_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].reshape(-1).to(logits.device)
    return nn.functional.cross_entropy(shifted_logits, shifted_labels, ignore_index=ignore_index)
