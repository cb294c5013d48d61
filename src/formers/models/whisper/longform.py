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
from .fallback import decode_window
from .generation_whisper import split_segments

INPUT_STRIDE = 2  # feature frames per encoder position (conv2's stride)


def _window(features: torch.Tensor, rows: list[int], seek: torch.Tensor, lengths: torch.Tensor,
            size: int) -> torch.Tensor:
    """[len(rows), n_mels, size]: each row's features from its seek point, zero-padded to `size`."""
    pieces = [features[r:r + 1, :, int(seek[r]):int(seek[r]) + int(lengths[r])] for r in rows]
    return torch.cat([F.pad(p, (0, size - p.shape[-1])) for p in pieces], dim=0)


def generate_long_form(model, features: torch.Tensor, attention_mask: torch.Tensor | None, config,
                       prompt: torch.Tensor, processors, kwargs: dict, return_segments: bool,
                       temperatures: list[float | None], threshold: float | None,
                       logprob_threshold: float | None = None):
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
    segments: list[list[dict]] = [[] for _ in range(batch)]
    while bool((seek < max_frames).any()):
        rows = [r for r in range(batch) if seek[r] < max_frames[r]]
        lengths = (max_frames - seek).clamp(max=window)
        hidden = model.get_encoder()(_window(features, rows, seek, lengths, window), return_dict=True)
        decoder_ids = prompt[rows]
        for processor in processors:
            if hasattr(processor, "set_begin_index"):
                processor.set_begin_index(decoder_ids.shape[-1])
        not_final = [int(seek[r]) + window < int(max_frames[r]) for r in range(batch)]
        generated = decode_window(model, hidden.last_hidden_state, decoder_ids, config, processors, kwargs,
                                  temperatures, threshold, [not_final[r] for r in rows], keep_prompt=False,
                                  logprob_threshold=logprob_threshold)
        for index, row in enumerate(rows):
            tokens = generated[index]
            offset = float(seek[row]) * time_precision / INPUT_STRIDE
            found, advance = _segments(tokens, timestamp_begin, offset, int(lengths[row]), time_precision)
            segments[row] += found
            seek[row] += advance
    joined = [torch.cat([s["tokens"] for s in row]) if row else torch.zeros(0, dtype=torch.long)
              for row in segments]
    width = max(len(t) for t in joined)
    sequences = torch.full((batch, width), config.pad_token_id, dtype=torch.long, device=prompt.device)
    for row, tokens in enumerate(joined):
        sequences[row, :len(tokens)] = tokens
    return {"sequences": sequences, "segments": segments} if return_segments else sequences


def _segments(tokens: torch.Tensor, begin: int, offset: float, window_frames: int, precision: float):
    """One window's tokens -> (segment dicts with absolute start/end seconds, frames to advance)."""
    is_time = tokens >= begin
    pieces = split_segments(tokens, begin)
    paired = bool((is_time[:-1] & is_time[1:]).any()) if len(tokens) > 1 else False
    if paired:
        found = [{"start": offset + (int(p[0]) - begin) * precision, "end": offset + (int(p[-1]) - begin) * precision,
                  "tokens": p} for p in pieces]
        if is_time[-2:].tolist() == [False, True]:
            return found, window_frames
        return found, (int(pieces[-1][-1]) - begin) * INPUT_STRIDE
    stamps = tokens[is_time]
    last = window_frames
    if stamps.numel() > 0 and int(stamps[-1]) != begin:
        last = int(stamps[-1]) - begin
    return [{"start": offset, "end": offset + last * precision, "tokens": tokens}], window_frames
