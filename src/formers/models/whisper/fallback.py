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
                  keep_prompt: bool) -> list[torch.Tensor]:
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
        out = generate_seq2seq(model, None, step, encoder_outputs=BaseModelOutput(last_hidden_state=hidden[todo]),
                               decoder_input_ids=ids, logits_processor=processors, **kwargs)
        out = out if keep_prompt else out[:, ids.shape[-1]:]
        again = []
        for index, row in enumerate(todo):
            results[row] = _strip(out[index], config, not_final[row])
            if threshold is not None and compression_ratio(results[row], model.config.vocab_size) > threshold:
                again.append(row)
        todo = again
        if not todo or attempt == len(temperatures) - 1:
            break
    return results
