"""Greedy search and multinomial sampling (transformers' `_sample`)."""
from __future__ import annotations

from ..decoding import decode
from ..step import RunningBatch


def start_batch(ctx, prompt, cache, rows_per_prompt: int = 1, sample_per_row: bool = True) -> RunningBatch:
    """The running batch for `prompt`, each row repeated `rows_per_prompt` times (return sequences, beams);
    `sample_per_row=False` when draws are made per prompt (beam sampling draws over all beams at once)."""
    batch = RunningBatch(prompt.input_ids, prompt.attention_mask, prompt.inputs_embeds, cache,
                         ctx.config.max_length, ctx.fill)
    batch.repeat_rows(rows_per_prompt)
    if sample_per_row:
        ctx.sampler.repeat_rows(rows_per_prompt)
    return batch


def run_sample(ctx, prompt, cache):
    batch = start_batch(ctx, prompt, cache, ctx.config.num_return_sequences)
    sequences = decode(ctx, batch)
    return ctx.recorder.decoder_only(sequences, batch.cache)
