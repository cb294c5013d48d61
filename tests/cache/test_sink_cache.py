"""SinkCache on left-padded batches, for sink counts below, at and above the longest padding (7 tokens).

Two references:
- transformers 4.45.2's generate() with its SinkCache. It masks the kept keys by *slot*: key slot j gets
  the 2D mask's column j, i.e. the padding flag of absolute position j. While the sinks cover the
  padding that is right (sinks are positions 0..s-1, every later slot holds a real token, and mask columns
  s.. are real tokens too). With fewer sinks than a row's padding, once the window slides, slots s..
  hold recent real tokens but read the padding flags of positions s.. and are masked out: 4.45.2 then
  drops real context of that row (a bug; formers masks each kept key by its absolute position).
- so, for every sink count, 4.45.2's model and SinkCache driven step by step with a 4D mask built from
  each kept key's absolute position (tracked here by the eviction rule SinkCache documents): the same
  eviction and re-rotation as 4.45.2, with the mask by position. Where the sinks cover the padding this
  reference equals 4.45.2's generate() too, which checks the reference itself.
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from .conftest import padded_batch

WINDOW, NEW_TOKENS, LONGEST_PADDING, PAD = 16, 30, 7, 0


@pytest.fixture(scope="module")
def llama(llama_dir):
    return (formers.AutoModelForCausalLM.from_pretrained(llama_dir),
            transformers.AutoModelForCausalLM.from_pretrained(llama_dir))


def _kept_after(held: list[int], new: list[int], sinks: int) -> list[int]:
    """Absolute positions a SinkCache holds after `new` positions arrive: all of them while they fit under
    the window, else the sinks, the newest keys that still fit, then the new ones."""
    if len(held) + len(new) < WINDOW or not held:
        return held + new
    return held[:sinks] + held[len(held) - WINDOW + sinks + len(new):] + new


def _mask_by_position(rows_mask: torch.Tensor, keys: list[int], queries: list[int]) -> torch.Tensor:
    """4D additive mask [B, 1, T, S]: query position q sees key position k iff k <= q and k is no pad."""
    keys_t, queries_t = torch.tensor(keys), torch.tensor(queries)
    allowed = (keys_t[None, :] <= queries_t[:, None])[None] & rows_mask[:, keys_t].bool()[:, None, :]
    return torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]


def _oracle_by_position(model, ids: torch.Tensor, mask: torch.Tensor, sinks: int) -> torch.Tensor:
    """Greedy decoding with 4.45.2's model and SinkCache, masked by each kept key's absolute position."""
    cache, held = transformers.SinkCache(window_length=WINDOW, num_sink_tokens=sinks), []
    tokens, full_mask = ids, mask
    step = list(range(ids.shape[1]))
    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as 4.45's generate() builds them
    inputs, unfinished = ids, torch.ones(ids.shape[0], 1, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            keys = _kept_after(held, step, sinks)
            logits = model(inputs, attention_mask=_mask_by_position(full_mask, keys, step), past_key_values=cache,
                           position_ids=position_ids, cache_position=torch.tensor(step), use_cache=True,
                           num_logits_to_keep=1).logits  # as generate(): the head on the last position only
            chosen = logits[:, -1:].argmax(-1)
            held, inputs = keys, torch.where(unfinished, chosen, PAD)  # finished rows continue with padding
            unfinished &= inputs != model.generation_config.eos_token_id
            tokens = torch.cat([tokens, inputs], dim=1)
            if not unfinished.any():
                break
            full_mask = torch.cat([full_mask, torch.ones_like(inputs)], dim=1)
            position_ids, step = position_ids[:, -1:] + 1, [step[-1] + 1]
    assert cache.get_seq_length() == WINDOW
    return tokens


@pytest.mark.parametrize("sinks", [0, 2, 4, 7, 8, 12])
def test_sink_cache_on_a_padded_batch(llama, sinks):
    ours, ref = llama
    ids, mask = padded_batch(3)
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=PAD)
    out = ours.generate(**kwargs, past_key_values=formers.SinkCache(window_length=WINDOW, num_sink_tokens=sinks))
    expected = _oracle_by_position(ref, ids, mask, sinks)
    assert torch.equal(out, expected)
    by_slot = ref.generate(**kwargs, past_key_values=transformers.SinkCache(window_length=WINDOW,
                                                                             num_sink_tokens=sinks))
    assert not torch.equal(by_slot, ref.generate(**kwargs))  # the window really slid
    for row, padding in enumerate((0, 3, LONGEST_PADDING)):
        # 4.45.2 agrees where the sinks cover the row's padding; elsewhere it masks out the real tokens that
        # sit in slots sinks..padding-1 once the window slides (see the module docstring)
        assert torch.equal(by_slot[row], out[row]) == (sinks >= padding), (row, padding)


@pytest.mark.parametrize("sinks", [0, 3, 12])
def test_sink_cache_batch_of_one_matches_transformers(llama, sinks):
    ours, ref = llama
    ids, mask = padded_batch(1)
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=PAD)
    expected = ref.generate(**kwargs, past_key_values=transformers.SinkCache(window_length=WINDOW,
                                                                              num_sink_tokens=sinks))
    out = ours.generate(**kwargs, past_key_values=formers.SinkCache(window_length=WINDOW, num_sink_tokens=sinks))
    assert torch.equal(out, expected)
