"""Diverse (group) beam search (transformers' `_group_beam_search`).

The K beams of a prompt form G groups of K/G; each step runs the model once on all beams, then the
groups choose in turn, the Hamming-diversity processor seeing the tokens earlier groups just picked
(`current_tokens`). Beam-index bookkeeping reproduces transformers 4.45 exactly, including which
group's history a finished hypothesis inherits.
"""
from __future__ import annotations

import torch

from ..beam_search import BeamSearchScorer
from .beam import candidate_count, finish, new_history, stop_now
from .sample import start_batch


def run_group_beam_search(ctx, prompt, cache):
    config, model, rec = ctx.config, ctx.model, ctx.recorder
    beams, groups, prompts, device = config.num_beams, config.num_beam_groups, prompt.batch_size, prompt.device
    size = beams // groups
    scorer = BeamSearchScorer(prompts, beams, device, length_penalty=config.length_penalty,
                              do_early_stopping=config.early_stopping,
                              num_beam_hyps_to_keep=config.num_return_sequences, num_beam_groups=groups,
                              max_length=config.max_length)
    batch = start_batch(ctx, prompt, cache, beams, sample_per_row=False)
    prompt_len = batch.cur
    beam_scores = torch.full((prompts, beams), -1e9, dtype=torch.float, device=device)
    beam_scores[:, ::size] = 0  # the first beam of each group starts
    beam_scores = beam_scores.view(-1)
    histories = [new_history(ctx, prompts * size, device) for _ in range(groups)]
    n_cands = candidate_count(ctx, size)
    base = torch.arange(prompts, device=device)[:, None] * beams
    group_rows = [(base + g * size + torch.arange(size, device=device)).reshape(-1) for g in range(groups)]
    while True:
        out = batch.forward(model, output_attentions=config.output_attentions,
                            output_hidden_states=config.output_hidden_states)
        ids = batch.tokens()
        current = torch.zeros(batch.rows, dtype=torch.long, device=device)
        reorder = torch.zeros(batch.rows, dtype=torch.long, device=device)
        processed_all = torch.zeros_like(out.logits[:, -1, :]) if rec.scores is not None else None
        for g, rows in enumerate(group_rows):
            group_ids = ids[rows]
            logprobs = torch.log_softmax(out.logits[rows, -1, :].float(), dim=-1)
            processed = ctx.processors(group_ids, logprobs, current_tokens=current, beam_group_idx=g)
            if processed_all is not None:
                processed_all[rows] = processed
            vocab = processed.shape[-1]
            totals = (processed + beam_scores[rows][:, None]).view(prompts, size * vocab)
            cand_scores, picks = torch.topk(totals, n_cands, dim=1, largest=True, sorted=True)
            chosen = scorer.process(group_ids, cand_scores, picks % vocab, torch.div(picks, vocab,
                                    rounding_mode="floor"), pad_token_id=ctx.pad, eos_token_id=ctx.eos,
                                    beam_indices=histories[0], group_index=g, decoder_prompt_len=prompt_len)
            beam_scores[rows] = chosen["next_beam_scores"]
            source = chosen["next_beam_indices"]
            if histories[g] is not None:
                histories[g] = torch.cat([histories[g][source], source[:, None]], dim=-1)
            current[rows] = chosen["next_beam_tokens"]
            reorder[rows] = beams * torch.div(source, size, rounding_mode="floor") + g * size + source % size
        rec.add(processed_all, out.logits[:, -1, :], out)
        batch.reorder(reorder)
        batch.append(current)
        if stop_now(ctx, batch, scorer):
            break
    history = torch.cat(histories) if histories[0] is not None else None
    return finish(ctx, batch, scorer, beam_scores, history, prompt_len)
