"""Token healing: re-pick each prompt's last token among the tokens that extend its text.

A prompt ending mid-word ("http") would otherwise force the model to continue from an unusual token
boundary. Each prompt is re-tokenized (stripped), its tail token dropped, and one token generated
with a +10 bias on every vocabulary token whose string starts with the tail's (+1 more on the tail
itself, so healing stays conservative). This is the behaviour transformers 4.45 documents; its own
implementation raises AttributeError (`ExtensionsTrie.values`).
"""
from __future__ import annotations

import bisect
from typing import Any

import torch

from ...errors import GenerationError
from ..configuration_utils import GenerationConfig


def _extensions(vocab: dict[str, int], prefix: str) -> list[int]:
    """Ids of the vocabulary tokens (raw token strings) that start with `prefix`."""
    tokens = sorted(vocab)
    start = bisect.bisect_left(tokens, prefix)
    out = []
    for token in tokens[start:]:
        if not token.startswith(prefix):
            break
        out.append(vocab[token])
    return out


def heal_tokens(model, input_ids: torch.LongTensor, tokenizer: Any) -> torch.LongTensor:
    """[B, L'] prompts with their tail token healed (re-tokenized, so L' may differ from the input's)."""
    if tokenizer is None:
        raise GenerationError("When generating with token healing, you must pass the model's tokenizer to the "
                              "`tokenizer` argument of `generate`.")
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    vocab = tokenizer.get_vocab()
    config = GenerationConfig(max_new_tokens=1, pad_token_id=pad)
    prompts = [text.strip() for text in tokenizer.batch_decode(input_ids, skip_special_tokens=True)]
    input_ids = tokenizer(prompts, return_tensors="pt", padding=True).input_ids.to(input_ids.device)
    input_ids = torch.where(input_ids == bos, pad, input_ids)
    space = tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(" "))[0]
    for row, tail_id in enumerate(input_ids[:, -1].tolist()):
        ids = input_ids[row]
        if bool((ids == pad).all()):
            continue  # an empty prompt
        tail = tokenizer.decode(tail_id).replace(" ", space)
        bias = {(alt,): 10.0 for alt in _extensions(vocab, tail)}
        if len(bias) <= 1:
            continue  # nothing to heal with
        bias[(tail_id,)] = bias.get((tail_id,), 10.0) + 1.0
        config.update(sequence_bias=bias)
        trimmed = ids[:-1].clone()
        if int((ids != pad).sum()) == 1:  # a single-token prompt regenerates from BOS
            trimmed[-1] = bos
        input_ids[row] = model.generate(trimmed.unsqueeze(0), generation_config=config)[0]
    return input_ids
