"""The running batch every decoding strategy advances, and the one model call they all share.

`RunningBatch` owns the id buffer [N, max_length] (prompt + generated tokens, written in place), the
attention mask and position ids for every column (computed once from the prompt mask: generated
columns are ones, so positions continue each row's count) and the KV cache. `forward()` feeds the
columns the cache has not seen yet and returns the model output; strategies only decide which
tokens to append, which rows to keep (`reorder`, `select_rows`) and what to drop (`crop`).

Coordinates: `cur` counts id columns written; the model's positions are id columns + `offset`,
where `offset` > 0 only for prompts given as `inputs_embeds` without ids (the output then holds
just the new tokens, as in transformers).
"""
from __future__ import annotations

import torch

from ..cache import Cache


class RunningBatch:
    """N rows of ids with their mask, positions and cache; see the module docstring."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 inputs_embeds: torch.Tensor | None, cache: Cache | None, max_length: int, fill: torch.Tensor | int):
        rows, prompt_len = input_ids.shape
        device = input_ids.device
        self.prompt_len = prompt_len
        self.embeds = inputs_embeds
        self.offset = inputs_embeds.shape[1] - prompt_len if inputs_embeds is not None else 0
        self.ids = torch.empty((rows, max_length), dtype=torch.long, device=device)
        self.ids[:, :prompt_len] = input_ids
        self.ids[:, prompt_len:] = fill
        self.mask = _mask_buffer(attention_mask, rows, max_length + self.offset, device)
        self.positions = _positions(self.mask)
        self.cache = cache
        self.seen = cache.get_seq_length() if cache is not None else 0
        self.cur = prompt_len
        self._first = True
        if cache is not None:
            cache.reserve(max_length + self.offset)

    # -- views ------------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    @property
    def capacity(self) -> int:
        return self.ids.shape[1]

    @property
    def seq_len(self) -> int:
        """Positions the model will have seen once every written column is fed."""
        return self.cur + self.offset

    def tokens(self) -> torch.Tensor:
        """ids [N, cur] written so far (what processors and stopping criteria see)."""
        return self.ids[:, :self.cur]

    def sequences(self) -> torch.Tensor:
        """The output ids: prompt + new tokens, or only the new tokens for embeds-only prompts."""
        return self.ids[:, :self.cur] if self.offset == 0 else self.ids[:, self.prompt_len:self.cur]

    def mask_upto(self, length: int) -> torch.Tensor | None:
        return self.mask[:, :length] if self.mask is not None else None

    # -- the model call ---------------------------------------------------------------------------
    def forward(self, model, *, keep: int = 1, output_attentions: bool = False, output_hidden_states: bool = False):
        """Feed every column the cache has not seen (all columns without a cache); return the output."""
        end = self.seq_len
        if self.cache is not None and model.needs_cache_refill(self.seen, end):
            self.cache.reset()  # stale keys (Phi3 past its trained length): feed every column again
            self.seen = 0
        start = self.seen if self.cache is not None else 0
        first = self._first
        self._first = False
        embeds = None
        if self.embeds is not None and (first or start == 0):
            embeds = self.embeds[:, start:] if first else torch.cat(
                [self.embeds, model.get_input_embeddings()(self.ids[:, self.prompt_len:self.cur])], dim=1)
        out = call_model(
            model, input_ids=None if embeds is not None else self.ids[:, start - self.offset:self.cur],
            inputs_embeds=embeds, attention_mask=self.mask_upto(end),
            position_ids=self.positions[:, start:end] if self.positions is not None else None,
            cache=self.cache, cache_position=torch.arange(start, end, device=self.ids.device), keep=keep,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        self.seen = end
        return out

    # -- editing ------------------------------------------------------------------------------------
    def append(self, tokens: torch.Tensor) -> None:
        """Write tokens [N] or [N, k] after the last written column."""
        tokens = tokens.reshape(self.rows, -1)
        self.ids[:, self.cur:self.cur + tokens.shape[1]] = tokens
        self.cur += tokens.shape[1]

    def reorder(self, index: torch.Tensor) -> None:
        """Rows <- rows[index] for ids and cache (beam search). Mask and positions stay: beams of one prompt
        share them, and transformers does not reorder them either."""
        self.ids[:, :self.cur] = self.ids[index, :self.cur]
        if self.cache is not None:
            self.cache.reorder_cache(index)

    def crop(self, cur: int) -> None:
        """Forget id columns from `cur` on, and cache positions the model saw past `cur - 1`."""
        self.cur = cur
        if self.cache is not None and self.seen > cur + self.offset - 1:
            self.cache.crop(cur + self.offset - 1)
            self.seen = cur + self.offset - 1

    def repeat_rows(self, times: int) -> None:
        """Each row repeated `times` times in place (beams, return sequences); the cache must be empty."""
        if times == 1:
            return
        self.ids = self.ids.repeat_interleave(times, dim=0)
        if self.mask is not None:
            self.mask = self.mask.repeat_interleave(times, dim=0)
            self.positions = self.positions.repeat_interleave(times, dim=0)
        if self.embeds is not None:
            self.embeds = self.embeds.repeat_interleave(times, dim=0)
        if self.cache is not None and self.cache.get_seq_length() > 0:
            self.cache.batch_repeat_interleave(times)


def call_model(model, *, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None,
               cache_position=None, keep: int = 1, output_attentions: bool = False,
               output_hidden_states: bool = False):
    """One forward pass with generate()'s conventions (cache on when given, logits of the last `keep`)."""
    return model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                 position_ids=position_ids, past_key_values=cache, use_cache=cache is not None,
                 cache_position=cache_position, num_logits_to_keep=keep, return_dict=True,
                 output_attentions=output_attentions, output_hidden_states=output_hidden_states)


def _mask_buffer(attention_mask, rows: int, width: int, device) -> torch.Tensor | None:
    if attention_mask is None:
        return None
    mask = torch.ones((rows, width), dtype=attention_mask.dtype, device=device)
    mask[:, :attention_mask.shape[1]] = attention_mask
    return mask


def _positions(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A row's first real token is position 0, pads read 1 (as transformers); ones after the prompt
    continue each row's count."""
    if mask is None:
        return None
    positions = mask.long().cumsum(-1) - 1
    positions.masked_fill_(mask == 0, 1)
    return positions
