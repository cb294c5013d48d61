"""Processors that look at token n-grams: no-repeat n-grams, sequence bias and bad words.

All matching is batched on the device: the history is unfolded into windows [B, W, n] and compared
with the current (n-1)-token context at once, instead of building per-row Python dicts.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

from ..errors import GenerationError
from .logits_base import LogitsProcessor, as_id_tensor, host_ids, ids_are_valid

SequenceBias = Union[dict, list]


def _banned_by_ngrams(history: torch.Tensor, context: torch.Tensor, ngram_size: int, vocab: int) -> torch.Tensor:
    """Bool [B, V]: tokens t such that (context + t) is an n-gram of `history` [B, S]; context is [B, n-1]."""
    rows = history.shape[0]
    if history.shape[1] < ngram_size:
        return torch.zeros(rows, vocab, dtype=torch.bool, device=history.device)
    windows = history.unfold(1, ngram_size, 1)                                   # [B, W, n]
    hit = (windows[..., :-1] == context[:, None, :]).all(-1)                      # [B, W]
    counts = torch.zeros(rows, vocab, dtype=torch.int32, device=history.device)
    counts.scatter_add_(1, windows[..., -1], hit.to(torch.int32))
    return counts > 0


class NoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Forbid any n-gram of size `ngram_size` from occurring twice in the sequence."""

    def __init__(self, ngram_size: int):
        if not isinstance(ngram_size, int) or ngram_size <= 0:
            raise GenerationError(f"`ngram_size` has to be a strictly positive integer, but is {ngram_size}")
        self.ngram_size = ngram_size

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        cur_len = input_ids.shape[-1]
        if cur_len + 1 < self.ngram_size:
            return scores
        context = input_ids[:, cur_len + 1 - self.ngram_size:]
        banned = _banned_by_ngrams(input_ids, context, self.ngram_size, scores.shape[-1])
        return scores.masked_fill(banned.to(scores.device), -float("inf"))


class EncoderNoRepeatNGramLogitsProcessor(LogitsProcessor):
    """Forbid n-grams of `encoder_input_ids` (one row per batch entry, shared by its beams)."""

    def __init__(self, encoder_ngram_size: int, encoder_input_ids: torch.LongTensor):
        if not isinstance(encoder_ngram_size, int) or encoder_ngram_size <= 0:
            raise GenerationError(
                f"`encoder_ngram_size` has to be a strictly positive integer, but is {encoder_ngram_size}")
        self.ngram_size = encoder_ngram_size
        if encoder_input_ids.dim() == 1:
            encoder_input_ids = encoder_input_ids.unsqueeze(0)
        self.batch_size = encoder_input_ids.shape[0]
        self.encoder_input_ids = encoder_input_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        num_beams = scores.shape[0] // self.batch_size
        cur_len = input_ids.shape[-1]
        if cur_len < self.ngram_size - 1:
            return scores
        history = self.encoder_input_ids.to(input_ids.device).repeat_interleave(num_beams, dim=0)
        context = input_ids[:, cur_len + 1 - self.ngram_size:]
        banned = _banned_by_ngrams(history, context, self.ngram_size, scores.shape[-1])
        return scores.masked_fill(banned.to(scores.device), -float("inf"))


class SequenceBiasLogitsProcessor(LogitsProcessor):
    """Add a bias to the last token of each given sequence when the rest of it ends the context.

    `sequence_bias` is {tuple(token ids): float} or [[token ids, float], ...]. Bias tensors are built on
    the first call (the vocabulary size comes from the scores), grouped by sequence length.
    """

    def __init__(self, sequence_bias: SequenceBias):
        self.sequence_bias = sequence_bias
        self._validate_arguments()
        self._convert_list_arguments_into_dict()
        self.length_1_bias: torch.Tensor | None = None
        self.prepared_bias_variables = False
        self._eos_exempt: torch.Tensor | None = None  # set by NoBadWords when eos ids live on a device
        self._groups: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.prepared_bias_variables:
            self._prepare_bias_variables(scores)
        bias = self.length_1_bias.to(scores.dtype)                                    # [V]
        if self._groups:
            bias = bias.expand(scores.shape).clone()                                   # [B, V]
        for length, prefixes, last_tokens, values in self._groups:
            if length > input_ids.shape[1]:
                continue  # longer than the context: cannot match yet
            tail = input_ids[:, input_ids.shape[1] - (length - 1):]                  # [B, l-1]
            match = (tail[:, None, :] == prefixes[None]).all(-1)                    # [B, S]
            contrib = torch.where(match, values[None], 0.0)
            bias.index_add_(1, last_tokens, contrib.to(bias.dtype))
        return scores + bias

    def _prepare_bias_variables(self, scores: torch.FloatTensor) -> None:
        vocab = scores.shape[-1]
        invalid = [t for seq in self.sequence_bias for t in seq if t >= vocab]
        if invalid:
            raise GenerationError(f"The model vocabulary size is {vocab}, but the following tokens were being "
                                  f"biased: {invalid}")
        device = scores.device
        self.length_1_bias = torch.zeros(vocab, dtype=torch.float, device=device)
        by_length: dict[int, list[tuple[tuple[int, ...], float]]] = {}
        for seq, value in self.sequence_bias.items():
            if len(seq) == 1:
                self.length_1_bias[seq[-1]] = value
            else:
                by_length.setdefault(len(seq), []).append((seq, value))
        if self._eos_exempt is not None:  # a bad word that is just an EOS id is never banned
            eos_mask = torch.isin(torch.arange(vocab, device=device), self._eos_exempt.to(device))
            self.length_1_bias.masked_fill_(eos_mask, 0.0)
        self._groups = [
            (length,
             torch.tensor([list(s[:-1]) for s, _ in items], dtype=torch.long, device=device),
             torch.tensor([s[-1] for s, _ in items], dtype=torch.long, device=device),
             torch.tensor([v for _, v in items], dtype=torch.float, device=device))
            for length, items in sorted(by_length.items())
        ]
        self.prepared_bias_variables = True

    def _validate_arguments(self) -> None:
        bias = self.sequence_bias
        if not isinstance(bias, (dict, list)) or len(bias) == 0:
            raise GenerationError(f"`sequence_bias` has to be a non-empty dictionary, or non-empty list of lists "
                                  f"but is {bias}.")
        if isinstance(bias, dict):
            if any(not isinstance(seq, tuple) for seq in bias):
                raise GenerationError(f"`sequence_bias` has to be a dict with tuples as keys, but is {bias}.")
            if any(len(seq) == 0 or not ids_are_valid(seq) for seq in bias):
                raise GenerationError(f"Each key in `sequence_bias` has to be a non-empty tuple of positive "
                                      f"integers, but is {bias}.")
            if any(not isinstance(value, float) for value in bias.values()):
                raise GenerationError(f"`sequence_bias` has to be a dict with floats as values, but is {bias}.")
            return
        for item in bias:
            ok = (isinstance(item, (list, tuple)) and len(item) > 0 and isinstance(item[0], list)
                  and all(isinstance(t, (int, np.integer)) and t > 0 for t in item[0])
                  and len(item) > 1 and isinstance(item[1], float))
            if not ok:
                raise GenerationError(f"Each element in `sequence_bias` has to be a non-empty list of lists of "
                                      f"positive integers and float, but is {bias}.")

    def _convert_list_arguments_into_dict(self) -> None:
        if isinstance(self.sequence_bias, list):
            self.sequence_bias = {tuple(item[0]): item[1] for item in self.sequence_bias}


class NoBadWordsLogitsProcessor(SequenceBiasLogitsProcessor):
    """Forbid the given token sequences (bias -inf on their last token); single-token EOS entries are kept."""

    def __init__(self, bad_words_ids: list[list[int]], eos_token_id: int | list[int] | torch.Tensor | None = None):
        self.bad_word_ids = bad_words_ids
        self._validate_arguments()
        eos_device_ids = None
        if eos_token_id is not None:
            eos_list = host_ids(eos_token_id)
            if eos_list is None:  # eos ids on an accelerator: exempt them on device, without a sync
                eos_device_ids = as_id_tensor(eos_token_id)
            else:
                bad_words_ids = [seq for seq in bad_words_ids if not any(seq == [e] for e in eos_list)]
        super().__init__(sequence_bias={tuple(seq): float("-inf") for seq in bad_words_ids})
        self._eos_exempt = eos_device_ids

    def _validate_arguments(self) -> None:
        bad = self.bad_word_ids
        if not isinstance(bad, list) or len(bad) == 0:
            raise GenerationError(f"`bad_words_ids` has to be a non-empty list, but is {bad}.")
        if any(not isinstance(seq, list) for seq in bad):
            raise GenerationError(f"`bad_words_ids` has to be a list of lists, but is {bad}.")
        if any(not ids_are_valid(seq) for seq in bad):
            raise GenerationError(f"Each list in `bad_words_ids` has to be a list of positive integers, but is {bad}.")

