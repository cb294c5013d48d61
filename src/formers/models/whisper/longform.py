"""Whisper long-form sequential decoding (> 30 s of features), as 4.45.2 computes it.

Each row keeps a `seek` frame pointer. Every round decodes the next 30 s window of the rows not yet done
(a short last window is zero-padded to 3000 frames), cuts the generated tokens into timestamped
segments, and moves `seek` to the last complete segment's end timestamp (or past the whole window when
it ends on a single timestamp / without pairs). The output is every row's kept segment tokens, joined
and right-padded with pad_token_id.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import GenerationError
from .fallback import WindowOptions, decode_window
from .generation_whisper import split_segments

INPUT_STRIDE = 2  # feature frames per encoder position (conv2's stride)


def _window(features: torch.Tensor, rows: list[int], seek: torch.Tensor, lengths: torch.Tensor,
            size: int) -> torch.Tensor:
    """[len(rows), n_mels, size]: each row's features from its seek point, zero-padded to `size`."""
    pieces = [features[r:r + 1, :, int(seek[r]):int(seek[r]) + int(lengths[r])] for r in rows]
    return torch.cat([F.pad(p, (0, size - p.shape[-1])) for p in pieces], dim=0)


def _prefixed_prompt(init: torch.Tensor, rows: list[int], segments: list[list[dict]], flags: list[bool], config,
                     prompt_ids: torch.Tensor | None, cut_off: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """4.45's decoder prompt for a window: [prev-sot, last `cut_off` tokens of the row's segments] left-padded
    in front of the task prompt when conditioning (rows not conditioned get the prev-sot alone; with
    prompt_condition_type="all-segments" the prompt_ids replace the prev-sot), else prompt_ids + task prompt."""
    if any(flags) and len(segments[0]) > 0:  # 4.45 looks at the first row's segments (and every flag)
        if prompt_ids is not None and config.prompt_condition_type == "all-segments":
            head = prompt_ids
        else:
            head = torch.tensor([config.prev_sot_token_id], dtype=torch.long, device=init.device)
        pieces = []
        for row in rows:
            if flags[row] and segments[row]:
                pieces.append(torch.cat([head, torch.cat([s["tokens"] for s in segments[row]])[-cut_off:]]))
            else:
                pieces.append(head)
        width = max(len(p) for p in pieces)
        prefix = torch.stack([F.pad(p, (width - len(p), 0), value=config.pad_token_id) for p in pieces])
        ids = torch.cat([prefix.to(init.device), init], dim=-1)
        return ids, ids != config.pad_token_id
    if prompt_ids is not None:
        return torch.cat([prompt_ids[None].expand(init.shape[0], -1).to(init.device), init], dim=-1), None
    return init, None


def generate_long_form(model, features: torch.Tensor, attention_mask: torch.Tensor | None, config,
                       prompt: torch.Tensor, processors, kwargs: dict, return_segments: bool,
                       options: WindowOptions, prompt_ids: torch.Tensor | None = None):
    """-> sequences [B, T] (or {"sequences", "segments"} with per-row segment dicts)."""
    batch, window = features.shape[0], 2 * model.config.max_source_positions
    if batch > 1 and attention_mask is None:
        raise GenerationError("generate(): batched long-form decoding needs the features' `attention_mask` "
                              "(feature_extractor(..., return_attention_mask=True))")
    total = features.shape[-1]
    max_frames = attention_mask.sum(-1).cpu().long() if batch > 1 else torch.full((batch,), total)
    seek = torch.zeros(batch, dtype=torch.long)
    time_precision = 0.02
    timestamp_begin = config.no_timestamps_token_id + 1
    first_segment = prompt_ids is not None and config.prompt_condition_type == "first-segment"
    segments: list[list[dict]] = [[{"tokens": _without_prev_sot(prompt_ids, config)}] if first_segment else []
                                  for _ in range(batch)]
    flags = [bool(options.condition_on_prev_tokens)] * batch
    cut_off = model.config.max_target_positions // 2 - 1
    while bool((seek < max_frames).any()):
        rows = [r for r in range(batch) if seek[r] < max_frames[r]]
        lengths = (max_frames - seek).clamp(max=window)
        hidden = model.get_encoder()(_window(features, rows, seek, lengths, window), return_dict=True)
        decoder_ids, mask = _prefixed_prompt(prompt[rows], rows, segments, flags, config, prompt_ids, cut_off)
        if (config.max_new_tokens or 0) + decoder_ids.shape[-1] > model.config.max_target_positions:
            raise GenerationError(f"generate(): the decoder prompt ({decoder_ids.shape[-1]} tokens incl. earlier "
                                  f"segments' text) plus max_new_tokens={config.max_new_tokens} exceeds "
                                  f"max_target_positions={model.config.max_target_positions}")
        for processor in processors:
            if hasattr(processor, "set_begin_index"):
                processor.set_begin_index(decoder_ids.shape[-1])
        not_final = [int(seek[r]) + window < int(max_frames[r]) for r in range(batch)]
        options.decoder_attention_mask = mask
        generated = decode_window(model, hidden.last_hidden_state, decoder_ids, config, processors, kwargs,
                                  options, [not_final[r] for r in rows], keep_prompt=False,
                                  init_length=prompt.shape[-1])
        for index, row in enumerate(rows):
            result = generated[index]
            flags[index] = result.condition  # 4.45 writes the flag at the row's place in this window's batch
            if result.skip:
                seek[row] += int(lengths[row])
                continue
            offset = float(seek[row]) * time_precision / INPUT_STRIDE
            times = None
            if result.token_timestamps is not None:  # offset as 4.45 adds it: a float32 tensor
                times = result.token_timestamps + seek[row] * time_precision / INPUT_STRIDE
            found, advance = _segments(result.tokens, timestamp_begin, offset, int(lengths[row]), time_precision,
                                       times)
            segments[row] += found
            seek[row] += advance
    if first_segment:
        segments = [row[1:] for row in segments]
    joined = [torch.cat([s["tokens"] for s in row]) if row else torch.zeros(0, dtype=torch.long)
              for row in segments]
    width = max(len(t) for t in joined)
    sequences = torch.full((batch, width), config.pad_token_id, dtype=torch.long, device=prompt.device)
    for row, tokens in enumerate(joined):
        sequences[row, :len(tokens)] = tokens
    return {"sequences": sequences, "segments": segments} if return_segments else sequences


def _without_prev_sot(prompt_ids: torch.Tensor, config) -> torch.Tensor:
    prev = getattr(config, "prev_sot_token_id", None)
    return prompt_ids[1:] if prev is not None and int(prompt_ids[0]) == prev else prompt_ids


def _segments(tokens: torch.Tensor, begin: int, offset: float, window_frames: int, precision: float,
              times: torch.Tensor | None = None):
    """One window's tokens -> (segment dicts with absolute start/end seconds, frames to advance); with
    `times` (the tokens' absolute seconds) each segment also gets its absolute `token_timestamps`."""
    is_time = tokens >= begin
    pieces = split_segments(tokens, begin)
    paired = bool((is_time[:-1] & is_time[1:]).any()) if len(tokens) > 1 else False
    if paired:
        found, cut = [], 0
        for piece in pieces:
            found.append({"start": offset + (int(piece[0]) - begin) * precision,
                          "end": offset + (int(piece[-1]) - begin) * precision, "tokens": piece})
            if times is not None:
                found[-1]["token_timestamps"] = times[cut:cut + len(piece)]
            cut += len(piece)
        if is_time[-2:].tolist() == [False, True]:
            return found, window_frames
        return found, (int(pieces[-1][-1]) - begin) * INPUT_STRIDE
    stamps = tokens[is_time]
    last = window_frames
    if stamps.numel() > 0 and int(stamps[-1]) != begin:
        last = int(stamps[-1]) - begin
    found = [{"start": offset, "end": offset + last * precision, "tokens": tokens}]
    if times is not None:
        found[0]["token_timestamps"] = times
    return found, window_frames
