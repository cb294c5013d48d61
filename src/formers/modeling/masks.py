"""Additive attention masks built once per forward and shared by all layers of one kind.

A mask is float [B, 1, T, S] holding 0 where a query may attend and the dtype's minimum elsewhere
(the form transformers uses, so rows that see nothing behave identically: uniform attention).
None means "plain causal, let the kernel handle it".

Caches that do not keep position i in slot i (static buffers longer than the sequence, ring buffers,
sink caches) pass `key_positions`: the absolute position of every key slot, negative for an empty
slot. Causality, the window and the padding mask are then all read through those positions.
"""
from __future__ import annotations

import torch


def build_attention_mask(
    attention_mask: torch.Tensor | None,
    cache_position: torch.Tensor,
    key_length: int,
    dtype: torch.dtype,
    sliding_window: int | None = None,
    allow_implicit_causal: bool = False,
    key_positions: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """attention_mask [B, S'] of 1/0 (or a ready 4D float mask), cache_position [T] -> [B, 1, T, S].

    With `allow_implicit_causal` (SDPA), returns None when nothing but causality restricts attention,
    so the kernel can use is_causal (T > 1) or no mask (T == 1). `key_positions` [S]: see above.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    query_length = cache_position.shape[0]
    in_order = key_positions is None
    if in_order:
        if allow_implicit_causal and _only_causal(attention_mask, query_length, key_length, sliding_window):
            return None
        key_positions = torch.arange(key_length, device=cache_position.device)
    allowed = key_positions[None, :] <= cache_position[:, None]  # [T, S]
    if sliding_window is not None:
        allowed &= key_positions[None, :] > cache_position[:, None] - sliding_window
    if not in_order:
        allowed &= (key_positions >= 0)[None, :]  # empty slots
    allowed = allowed[None, None]  # [1, 1, T, S]
    if attention_mask is not None:
        padding = _padding_in_order(attention_mask, key_length) if in_order \
            else _padding_at(attention_mask, key_positions)
        allowed = allowed & padding[:, None, None, :]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=cache_position.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def _padding_in_order(attention_mask: torch.Tensor, key_length: int) -> torch.Tensor:
    """[B, S] bool for keys at positions 0..S-1; keys past the given mask count as present."""
    padding = attention_mask[:, :key_length].bool()
    if padding.shape[-1] < key_length:
        padding = torch.nn.functional.pad(padding, (0, key_length - padding.shape[-1]), value=True)
    return padding


def _padding_at(attention_mask: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
    """[B, S] bool: is the token at each key position real? Positions past the mask count as real."""
    given = attention_mask.shape[-1]
    index = key_positions.clamp(0, given - 1).expand(attention_mask.shape[0], -1)
    return attention_mask.gather(1, index).bool() | (key_positions >= given)[None, :]


def _only_causal(attention_mask, query_length: int, key_length: int, sliding_window: int | None) -> bool:
    if query_length not in (1, key_length):
        return False
    if sliding_window is not None and key_length >= sliding_window:
        return False
    if attention_mask is None:
        return True
    if torch.compiler.is_compiling() or (query_length == 1 and attention_mask.device.type != "cpu"):
        return False  # traced, or decoding on an accelerator: an explicit mask instead of a host read
    return bool(attention_mask.all())
