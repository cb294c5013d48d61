"""The token loop behind greedy search and multinomial sampling.

Ids live in one preallocated buffer [B, max_length]; each step feeds only the new position, writes
the chosen token in place and updates per-row `unfinished` flags on the device. On CPU the loop asks
"all done?" every step (a free check there); on accelerators only every few steps, trimming the
overshoot afterwards, so the host does not stall the device once per token.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..cache import Cache, DynamicCache


@dataclass
class DecodeState:
    """Everything the loop needs besides the model and the processors."""

    input_ids: torch.Tensor            # [B, P] prompt ids (P may be 0 with inputs_embeds)
    attention_mask: torch.Tensor | None  # [B, P] or None when no row is padded
    inputs_embeds: torch.Tensor | None   # [B, P', C] fed on the first step instead of ids
    cache: Cache | None                  # None: use_cache=False, every step re-reads the whole sequence
    max_length: int
    pad_token_id: torch.Tensor | None
    do_sample: bool
    pad_finished_rows: bool
    streamer: object | None = None
    output_scores: bool = False
    output_logits: bool = False
    output_attentions: bool = False
    output_hidden_states: bool = False
    scores: list = field(default_factory=list)
    raw_logits: list = field(default_factory=list)
    attentions: list = field(default_factory=list)
    hidden_states: list = field(default_factory=list)


def decode(model, state: DecodeState, processors, criteria) -> torch.Tensor:
    """Run the loop; returns the ids [B, L] (prompt + new tokens), L <= max_length."""
    ids_in, batch = state.input_ids, state.input_ids.shape[0]
    device, prompt_len = ids_in.device, ids_in.shape[1]
    fill = state.pad_token_id if state.pad_token_id is not None else 0
    ids = torch.empty((batch, state.max_length), dtype=torch.long, device=device)
    ids[:, :prompt_len] = ids_in
    ids[:, prompt_len:] = fill
    embeds_len = state.inputs_embeds.shape[1] if state.inputs_embeds is not None else prompt_len
    mask = _mask_buffer(state.attention_mask, batch, embeds_len, state.max_length - prompt_len, device)
    positions = _initial_positions(mask, embeds_len)
    past = state.cache.get_seq_length() if state.cache is not None else 0
    if isinstance(state.cache, DynamicCache):
        state.cache.reserve(embeds_len + state.max_length - prompt_len)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    check_every = 1 if device.type == "cpu" or state.streamer is not None else 8
    finished_at = torch.full((), state.max_length, dtype=torch.long, device=device)

    cur, seq_len = prompt_len, embeds_len  # ids written / positions the model has seen
    cache_position = torch.arange(past, seq_len, device=device)
    step = 0
    while cur < state.max_length:
        first = step == 0
        start = 0 if state.cache is None else (past if first else seq_len - 1)
        model_inputs = dict(
            attention_mask=mask[:, :seq_len] if mask is not None else None,
            position_ids=positions[:, start:seq_len] if positions is not None else None,
            past_key_values=state.cache, use_cache=state.cache is not None,
            cache_position=cache_position if state.cache is not None else torch.arange(seq_len, device=device),
            num_logits_to_keep=1, return_dict=True,
            output_attentions=state.output_attentions, output_hidden_states=state.output_hidden_states,
        )
        offset = embeds_len - prompt_len  # embeds-only prompts: ids hold just the new tokens
        if state.inputs_embeds is None or not first and state.cache is not None:
            model_inputs["input_ids"] = ids[:, start - offset: cur]
        elif first:
            model_inputs["inputs_embeds"] = state.inputs_embeds[:, start:]
        else:  # no cache: the prompt embeddings plus those of the tokens generated so far
            new_embeds = model.get_input_embeddings()(ids[:, prompt_len:cur])
            model_inputs["inputs_embeds"] = torch.cat([state.inputs_embeds, new_embeds], dim=1)
        out = model(**model_inputs)
        logits = out.logits[:, -1, :]
        scores = processors(ids[:, :cur], logits)
        _record(state, logits, scores, out)
        if state.do_sample:
            next_tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            next_tokens = torch.argmax(scores, dim=-1)
        if state.pad_finished_rows:
            next_tokens = torch.where(unfinished, next_tokens, fill)
        ids[:, cur] = next_tokens
        cur, seq_len, step = cur + 1, seq_len + 1, step + 1
        if state.streamer is not None:
            state.streamer.put(next_tokens.cpu())
        unfinished &= ~criteria(ids[:, :cur], scores)
        cache_position = cache_position[-1:] + 1
        if check_every == 1:
            if not bool(unfinished.any()):
                break
        else:
            newly_done = (finished_at == state.max_length) & ~unfinished.any()
            finished_at = torch.where(newly_done, cur, finished_at)
            if step % check_every == 0 and not bool(unfinished.any()):
                break
    if check_every != 1:
        cur = min(cur, int(finished_at))
        if isinstance(state.cache, DynamicCache):  # drop what the overshoot steps cached
            state.cache.crop(cur - 1 + embeds_len - prompt_len)
    return ids[:, :cur] if prompt_len == embeds_len else ids[:, prompt_len:cur]


def _mask_buffer(attention_mask, batch, prompt_len, new_tokens, device) -> torch.Tensor | None:
    if attention_mask is None:
        return None
    mask = torch.ones((batch, prompt_len + new_tokens), dtype=attention_mask.dtype, device=device)
    mask[:, :prompt_len] = attention_mask
    return mask


def _initial_positions(mask: torch.Tensor | None, prompt_len: int) -> torch.Tensor | None:
    """Positions for the whole buffer: a row's first real token is 0, pads read 1 (as transformers);
    generated columns are ones in the mask, so they continue each row's count."""
    if mask is None:
        return None
    positions = mask.long().cumsum(-1) - 1
    positions.masked_fill_(mask == 0, 1)
    return positions


def _record(state: DecodeState, logits, scores, out) -> None:
    if state.output_scores:
        state.scores.append(scores)
    if state.output_logits:
        state.raw_logits.append(logits.clone())
    if state.output_attentions:
        state.attentions.append(out.attentions)
    if state.output_hidden_states:
        state.hidden_states.append(out.hidden_states)
