"""One Whisper window decoded with 4.45's temperature fallback: rows whose text compresses too well
(zlib ratio above `compression_ratio_threshold`, i.e. repetitive) are decoded again, sampling at the
next temperature of the schedule; the last attempt is kept whatever its ratio."""
from __future__ import annotations

import copy
import math
import zlib
from typing import Any

import torch

from ...generation.encoder_decoder import generate_seq2seq
from ...modeling_outputs import BaseModelOutput


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


def _strip(row: torch.Tensor, config, not_final: bool) -> torch.Tensor:
    """4.45's clean-up: a non-final window drops its closing eos; a row ending in padding drops as many
    tokens as it holds pad tokens."""
    if not_final and len(row) and int(row[-1]) == config.eos_token_id:
        row = row[:-1]
    if len(row) and int(row[-1]) == config.pad_token_id:
        row = row[: len(row) - int((row == config.pad_token_id).sum())]
    return row


def decode_window(model, hidden: torch.Tensor, prompt: torch.Tensor, config, processors, kwargs: dict[str, Any],
                  temperatures: list[float | None], threshold: float | None, not_final: list[bool],
                  keep_prompt: bool, logprob_threshold: float | None = None) -> list[torch.Tensor]:
    """Per row: the window's tokens (with the prompt when `keep_prompt`), cleaned up as 4.45 does."""
    results: list[torch.Tensor | None] = [None] * prompt.shape[0]
    todo = list(range(prompt.shape[0]))
    for attempt, temperature in enumerate(temperatures):
        config.do_sample = temperature is not None and temperature > 0.0
        config.temperature = temperature if config.do_sample else 1.0
        if config.do_sample:
            config.num_beams = 1  # 4.45 leaves it so for the windows that follow
        step = copy.deepcopy(config)
        ids = prompt[todo]
        # 4.45 never prepends <|startoftranscript|> to Whisper's prompt: each row's first id is its start id
        step.decoder_start_token_id = ids[:, 0].tolist()
        if logprob_threshold is not None:  # the step scores are needed
            step.return_dict_in_generate, step.output_scores = True, True
        out = generate_seq2seq(model, None, step, encoder_outputs=BaseModelOutput(last_hidden_state=hidden[todo]),
                               decoder_input_ids=ids, logits_processor=processors, **kwargs)
        scores = torch.stack(out.scores, dim=1) if logprob_threshold is not None else None  # [rows, T, V]
        out = out.sequences if logprob_threshold is not None else out
        out = out if keep_prompt else out[:, ids.shape[-1]:]
        again = []
        for index, row in enumerate(todo):
            results[row] = _strip(out[index], config, not_final[row])
            too_repetitive = threshold is not None and \
                compression_ratio(results[row], model.config.vocab_size) > threshold
            too_unlikely = logprob_threshold is not None and average_logprob(
                scores[index], results[row], config.eos_token_id, temperature) < logprob_threshold
            if too_repetitive or too_unlikely:
                again.append(row)
        todo = again
        if not todo or attempt == len(temperatures) - 1:
            break
    return results
