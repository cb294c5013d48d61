"""Putting audio into a Qwen2-Audio prompt: each `<|AUDIO|>` token becomes that audio's encoder vectors.

Prompt rows (ids, left-padded)          Merged rows (width W = the longest expanded row)
  a b <A> c   <A> -> 3 vectors             a b A A A c
  _ d <A> e   <A> -> 1 vector              _ _ _ d A e   (pads and the new room: mask 0, zero vectors)
The k-th `<|AUDIO|>` of the batch (row-major order) takes the k-th audio's first `lengths[k]` vectors.
Rows line up at the end (left padding, generation) or the start (right padding, training), as transformers
4.45 decides it: from where the mask has zeros, else from the model's `padding_side`. Positions count the
merged mask: cumsum - 1, with pads at 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import GenerationError


@dataclass
class MergedPrompt:
    inputs_embeds: torch.Tensor         # [B, W, C]
    attention_mask: torch.Tensor        # [B, W]
    position_ids: torch.Tensor          # [B, W]
    labels: torch.Tensor | None         # [B, W] (audio slots and pads: ignore_index)


def padding_is_left(attention_mask: torch.Tensor, default_side: str) -> bool:
    """Which side a batch is padded on (one host read); a batch of one counts as left-padded."""
    if attention_mask.shape[0] == 1:
        return True
    left, right = (bool((attention_mask[:, i] == 0).any()) for i in (0, -1))
    if left and right:
        raise GenerationError(f"Qwen2-Audio: the attention_mask has zeros at both ends, so the padding side is "
                              f"unknown; pad on one side only: {attention_mask}")
    return left or (not right and default_side == "left")


def merge_audio_features(audio_features: torch.Tensor, audio_lengths: torch.Tensor, inputs_embeds: torch.Tensor,
                         input_ids: torch.Tensor, attention_mask: torch.Tensor, audio_token_index: int,
                         padding_side: str = "left", labels: torch.Tensor | None = None,
                         ignore_index: int = -100) -> MergedPrompt:
    """audio_features [N, T, C] (N audios, the first audio_lengths[n] rows valid) into the prompt (see module doc)."""
    batch, _length = input_ids.shape
    device = inputs_embeds.device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    audio_lengths = audio_lengths.to(device)
    is_audio = input_ids == audio_token_index
    if int(is_audio.sum()) != audio_features.shape[0]:
        raise GenerationError(f"Qwen2-Audio: the prompt holds {int(is_audio.sum())} audio tokens "
                              f"(id {audio_token_index}) but {audio_features.shape[0]} audios were given; "
                              "put one <|AUDIO|> in the text per audio")
    slots = torch.ones_like(input_ids)  # merged slots each prompt token takes
    slots[is_audio] = audio_lengths.to(slots.dtype)
    end = slots.cumsum(-1)  # one past each token's last slot
    row_width = end[:, -1]
    width = int(row_width.max())
    left = padding_is_left(attention_mask, padding_side)
    shift = width - row_width if left else torch.zeros_like(row_width)
    start = end - slots + shift[:, None]

    rows, cols = torch.nonzero(~is_audio & (attention_mask == 1), as_tuple=True)  # real text tokens
    targets = start[rows, cols]
    merged = inputs_embeds.new_zeros((batch, width, inputs_embeds.shape[-1]))
    merged[rows, targets] = inputs_embeds[rows, cols]
    mask = attention_mask.new_zeros((batch, width))
    mask[rows, targets] = attention_mask[rows, cols]
    merged_labels = None
    if labels is not None:
        merged_labels = torch.full((batch, width), ignore_index, dtype=torch.long, device=device)
        merged_labels[rows, targets] = labels.to(device)[rows, cols]

    # audio slots: the free slots within each row's real span (the last / first `real` slots)
    real = row_width - (attention_mask == 0).sum(-1)
    column = torch.arange(width, device=device)[None, :]
    in_span = column >= (width - real)[:, None] if left else column < real[:, None]
    free = torch.ones((batch, width), dtype=torch.bool, device=device)
    free[rows, targets] = False
    audio_slots = free & in_span
    valid = torch.arange(audio_features.shape[1], device=device)[None, :] < audio_lengths[:, None]
    vectors = audio_features[valid]
    if int(audio_slots.sum()) != vectors.shape[0]:
        raise GenerationError(f"Qwen2-Audio: {vectors.shape[0]} audio vectors do not fit the {int(audio_slots.sum())} "
                              "audio slots of the prompt; check the attention_mask and the <|AUDIO|> tokens")
    merged[audio_slots] = vectors.to(merged.dtype)
    mask = mask | audio_slots.to(mask.dtype)
    positions = (mask.long().cumsum(-1) - 1).masked_fill_(mask == 0, 1)
    return MergedPrompt(merged, mask, positions, merged_labels)
