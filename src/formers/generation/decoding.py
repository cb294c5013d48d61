"""The token loop behind greedy search, multinomial sampling and DoLa.

Each step feeds only the new position, turns the output into next-token logits (the last position's
logits, or DoLa's layer contrast), runs the processors, picks a token per row, writes it in place and
updates per-row `unfinished` flags on the device. On CPU the loop asks "all done?" every step (a free
check there: that is the one host sync per step); on accelerators only every few steps, trimming the
overshoot afterwards, so the host does not stall the device once per token. While torch.compile
traces generate() it never asks: the loop runs to the maximum length (rows that stopped get padding),
as transformers' compiled generate() does.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..cache import DynamicCache
from ..kernels.step_ops import argmax_last
from .context import GenerationContext
from .step import RunningBatch

# out -> (raw logits to record [N, V], logits the processors see [N, V])
LogitsFn = Callable[[object], tuple[torch.Tensor, torch.Tensor]]


def last_position_logits(out) -> tuple[torch.Tensor, torch.Tensor]:
    logits = out.logits[:, -1, :].float()
    return logits, logits


def decode(ctx: GenerationContext, batch: RunningBatch, logits_fn: LogitsFn = last_position_logits,
           needs_hidden_states: bool = False) -> torch.Tensor:
    """Greedy search or sampling (per `ctx.config.do_sample`) until every row stops; returns the ids."""
    config, rec, model = ctx.config, ctx.recorder, ctx.model
    device = batch.ids.device
    do_sample, fill, pad_rows = config.do_sample, ctx.fill, ctx.pad_finished_rows
    unfinished = torch.ones(batch.rows, dtype=torch.bool, device=device)
    check_every = 0 if torch.compiler.is_compiling() else ctx.sync_every(device)  # 0: never
    max_length = batch.capacity
    finished_at = torch.full((), max_length, dtype=torch.long, device=device)
    # a state cache cannot crop the overshoot steps away: it keeps a checkpoint per step since the last check
    roll_back = check_every > 1 and batch.cache is not None and batch.cache.recurrent
    step = 0
    while batch.cur < max_length:
        if roll_back:
            batch.cache.checkpoint()
        ctx.processors.prepare_step(batch.tokens())
        out = batch.forward(model, output_attentions=config.output_attentions,
                            output_hidden_states=bool(config.output_hidden_states) or needs_hidden_states)
        raw, logits = logits_fn(out)
        scores = ctx.processors(batch.tokens(), logits)
        rec.add(scores, raw, out)
        if do_sample:
            next_tokens = ctx.sampler.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
        else:
            next_tokens = argmax_last(scores)
        if pad_rows:
            next_tokens = torch.where(unfinished, next_tokens, fill)
        batch.append(next_tokens)
        ctx.stream(next_tokens)
        unfinished &= ~ctx.criteria(batch.tokens(), rec.scores_so_far())
        step += 1
        if check_every == 1:
            if not bool(unfinished.any()):
                break
        elif check_every:
            newly_done = (finished_at == max_length) & ~unfinished.any()
            finished_at = torch.where(newly_done, batch.cur, finished_at)
            if step % check_every == 0:
                if not bool(unfinished.any()):
                    break
                if roll_back:  # nothing finished in this window: its checkpoints are not needed
                    batch.cache.rewind(batch.cache.get_seq_length())
    if check_every > 1:
        cur = min(batch.cur, int(finished_at))
        if cur < batch.cur:
            _trim_overshoot(rec, batch.cur - cur)
            batch.cur = cur
            if isinstance(batch.cache, DynamicCache) or roll_back:  # drop what the overshoot steps cached
                batch.cache.rewind(cur - 1 + batch.offset)
    return batch.sequences()


def _trim_overshoot(rec, steps: int) -> None:
    for values in (rec.scores, rec.logits, rec.attentions, rec.hidden_states):
        if values is not None:
            del values[len(values) - steps:]
