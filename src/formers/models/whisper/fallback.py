"""One Whisper window decoded with 4.45's temperature fallback: rows whose text compresses too well
(zlib ratio above `compression_ratio_threshold`, i.e. repetitive) are decoded again, sampling at the
next temperature of the schedule; the last attempt is kept whatever its ratio."""
from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass
from typing import Any

import torch

from ...cache.encoder_decoder import EncoderDecoderCache
from ...cache.static import StaticCache
from ...errors import GenerationError
from ...generation.encoder_decoder import generate_seq2seq
from ...modeling_outputs import BaseModelOutput
from .token_timestamps import token_timestamps


def compression_ratio(tokens: torch.Tensor, vocab_size: int) -> float:
    """Raw byte length / zlib-compressed byte length of the ids (each id in the fewest whole bytes)."""
    width = int(math.log2(vocab_size) / 8) + 1
    raw = b"".join(int(t).to_bytes(width, "little") for t in tokens.tolist())
    return len(raw) / len(zlib.compress(raw))


def average_logprob(scores: torch.Tensor, tokens: torch.Tensor, eos_token_id: int, temperature: float | None) -> float:
    """Mean log-probability of the generated tokens (eos excluded; length + 1 in the denominator, as 4.45),
    from the step scores [T, V] undone of the temperature."""
    scale = temperature if temperature else 1.0
    if scores.shape[0] > tokens.shape[0]:
        scores = scores[: tokens.shape[0]]
    else:
        tokens = tokens[-scores.shape[0]:]
    logprobs = torch.log_softmax((scores * scale).float(), dim=-1).to(scores.dtype)
    picked = logprobs.gather(1, tokens[:, None])[:, 0] * (tokens != eos_token_id)
    return float(picked.sum() / ((tokens != eos_token_id).sum() + 1))


@dataclass
class WindowRow:
    """One row's result for a window: its tokens (cleaned up), per-token seconds when asked for, whether
    the no-speech test skipped it, and whether the next window may be conditioned on it."""

    tokens: torch.Tensor
    token_timestamps: torch.Tensor | None = None
    skip: bool = False
    condition: bool = False


@dataclass
class WindowOptions:
    """How a window is decoded (4.45's generate_with_fallback settings)."""

    temperatures: list[float | None]
    threshold: float | None = None            # compression_ratio_threshold
    logprob_threshold: float | None = None
    no_speech_threshold: float | None = None
    condition_on_prev_tokens: bool = False
    alignment: dict | None = None              # token timestamps: heads, median width, num_frames
    decoder_attention_mask: torch.Tensor | None = None


def _strip(row: torch.Tensor, config, not_final: bool) -> tuple[torch.Tensor, int]:
    """4.45's clean-up: a non-final window drops its closing eos; a row ending in padding drops as many
    tokens as it holds pad tokens. -> (row, tokens dropped)."""
    length = len(row)
    if not_final and len(row) and int(row[-1]) == config.eos_token_id:
        row = row[:-1]
    if len(row) and int(row[-1]) == config.pad_token_id:
        row = row[: len(row) - int((row == config.pad_token_id).sum())]
    return row, length - len(row)


def no_speech_probs(model, hidden: torch.Tensor, prompt: torch.Tensor, mask: torch.Tensor | None, config,
                    init_length: int) -> torch.Tensor:
    """[rows] probability of the no-speech token (the id before <|notimestamps|>) right after each row's
    <|startoftranscript|> (which follows any earlier-segment prefix), from the unprocessed logits."""
    with torch.no_grad():
        logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), decoder_input_ids=prompt,
                       decoder_attention_mask=mask, use_cache=False).logits
    position = prompt.shape[-1] - init_length
    return logits[:, position].float().softmax(dim=-1)[:, config.no_timestamps_token_id - 1]


def static_cache(model, batch: int, encoder_length: int, dtype, device) -> EncoderDecoderCache:
    """cache_implementation="static" for Whisper: fixed-shape self-attention slots (max_target_positions)
    and cross-attention slots (the encoder length), kept on the model and zeroed between calls so a
    compiled decoder step sees the same buffers every time."""
    key = (batch, encoder_length, dtype, torch.device(device))
    kept = model.__dict__.get("_whisper_static_cache")
    if kept is not None and kept[0] == key:
        kept[1].reset()
        return kept[1]
    config = model.config
    cache = EncoderDecoderCache(
        StaticCache(config, batch_size=batch, max_cache_len=config.max_target_positions, device=device, dtype=dtype),
        StaticCache(config, batch_size=batch, max_cache_len=encoder_length, device=device, dtype=dtype))
    model.__dict__["_whisper_static_cache"] = (key, cache)
    return cache


def decode_window(model, hidden: torch.Tensor, prompt: torch.Tensor, config, processors, kwargs: dict[str, Any],
                  options: WindowOptions, not_final: list[bool], keep_prompt: bool,
                  init_length: int = 1) -> list[WindowRow]:
    """Per row: the window's tokens (with the prompt when `keep_prompt`), cleaned up as 4.45 does."""
    results: list[WindowRow | None] = [None] * prompt.shape[0]
    todo = list(range(prompt.shape[0]))
    mask = options.decoder_attention_mask
    speech = None
    if options.no_speech_threshold is not None:
        speech = no_speech_probs(model, hidden, prompt, mask, config, init_length)
    # 4.45 files each attempt's skip verdict at the row's place in that attempt's batch (read back per row)
    skipped = [False] * prompt.shape[0]
    for attempt, temperature in enumerate(options.temperatures):
        config.do_sample = temperature is not None and temperature > 0.0
        config.temperature = temperature if config.do_sample else 1.0
        if config.do_sample:
            config.num_beams = 1  # 4.45 leaves it so for the windows that follow
        step = copy.deepcopy(config)
        ids = prompt[todo]
        # 4.45 never prepends <|startoftranscript|> to Whisper's prompt: each row's first id is its start id
        step.decoder_start_token_id = ids[:, 0].tolist()
        want_scores = options.logprob_threshold is not None or options.alignment is not None
        if want_scores:
            step.return_dict_in_generate, step.output_scores = True, True
        if options.alignment is not None:
            step.output_attentions = True
        extra = {} if mask is None else {"decoder_attention_mask": mask[todo]}
        if step.cache_implementation == "static":
            extra["past_key_values"] = static_cache(model, len(todo), hidden.shape[1], hidden.dtype, hidden.device)
            step.cache_implementation = None
        out = generate_seq2seq(model, None, step, encoder_outputs=BaseModelOutput(last_hidden_state=hidden[todo]),
                               decoder_input_ids=ids, logits_processor=processors, **extra, **kwargs)
        scores = torch.stack(out.scores, dim=1) if want_scores else None  # [rows, T, V]
        times = None
        if options.alignment is not None:
            times = token_timestamps(out.cross_attentions, out.sequences, **options.alignment)
        sequences = out.sequences if want_scores else out
        start = 0 if keep_prompt else ids.shape[-1]
        again = []
        for index, row in enumerate(todo):
            tokens, dropped = _strip(sequences[index, start:], config, not_final[row])
            row_times = None
            if times is not None:
                row_times = times[index, start:]
                if not keep_prompt and dropped:  # 4.45 trims the long-form timings with the tokens
                    row_times = row_times[:-dropped]
            result = WindowRow(tokens, row_times)
            too_repetitive = options.threshold is not None and \
                compression_ratio(tokens, model.config.vocab_size) > options.threshold
            logprob = None
            if options.logprob_threshold is not None:
                logprob = average_logprob(scores[index], tokens, config.eos_token_id, temperature)
            too_unlikely = logprob is not None and logprob < options.logprob_threshold
            if speech is not None:
                # 4.45 reads the probability at the row's place in this attempt's batch when the prompt is longer
                # than <|startoftranscript|> (computed once for the window), else from this attempt's rows
                prob = float(speech[index] if init_length > 1 else speech[row])
                if logprob is None:
                    raise GenerationError("generate(no_speech_threshold=...) needs logprob_threshold too (4.45 "
                                          "skips a window only when both say so)")
                skipped[index] = too_unlikely and prob > options.no_speech_threshold
                if skipped[index]:
                    too_repetitive, too_unlikely = False, False
            result.condition = options.condition_on_prev_tokens and (temperature is None or temperature < 0.5)
            results[row] = result
            if too_repetitive or too_unlikely:
                again.append(row)
        todo = again
        if not todo or attempt == len(options.temperatures) - 1:
            break
    for row, result in enumerate(results):
        result.skip = skipped[row]
    return results
