"""Constrained beam search (`constraints`, `force_words_ids`; transformers' `_constrained_beam_search`)."""
from __future__ import annotations

import torch

from ...errors import GenerationError
from ..beam_constraints import DisjunctiveConstraint, PhrasalConstraint
from ..constrained_scorer import ConstrainedBeamSearchScorer
from .beam import advance_beams, beam_log_probs, finish, start_beams, stop_now


def constraints_from_config(config) -> list:
    """`constraints` plus one Phrasal (list of ids) or Disjunctive (list of lists) constraint per forced word."""
    constraints = list(config.constraints) if config.constraints is not None else []
    words = config.force_words_ids
    if words is None:
        return constraints

    def bad():
        return GenerationError(f"`force_words_ids` has to either be a `List[List[List[int]]]` or `List[List[int]]` "
                               f"of positive integers, but is {words}.")
    if not isinstance(words, list) or len(words) == 0:
        raise bad()
    for word in words:
        if not isinstance(word, list) or len(word) == 0:
            raise bad()
        if isinstance(word[0], list):
            if any(not isinstance(seq, list) or any(not isinstance(t, int) or t < 0 for t in seq) for seq in word):
                raise bad()
            constraints.append(DisjunctiveConstraint(word))
        else:
            if any(not isinstance(t, int) or t < 0 for t in word):
                raise bad()
            constraints.append(PhrasalConstraint(word))
    return constraints


def run_constrained_beam_search(ctx, prompt, cache):
    config, rec = ctx.config, ctx.recorder
    beams, prompts, device = config.num_beams, prompt.batch_size, prompt.device
    scorer = ConstrainedBeamSearchScorer(prompts, beams, constraints_from_config(config), device,
                                         length_penalty=config.length_penalty, do_early_stopping=config.early_stopping,
                                         num_beam_hyps_to_keep=config.num_return_sequences,
                                         max_length=config.max_length)
    batch, beam_scores, history, n_cands = start_beams(ctx, prompt, cache)
    prompt_len = batch.cur
    while True:
        out, logits, processed = beam_log_probs(ctx, batch)
        totals = processed + beam_scores[:, None]
        rec.add(totals, logits, out)  # transformers records the beam-score-added totals here
        vocab = totals.shape[-1]
        cand_scores, picks = torch.topk(totals.view(prompts, beams * vocab), n_cands, dim=1, largest=True,
                                        sorted=True)
        chosen = scorer.process(batch.tokens(), cand_scores, picks % vocab,
                                torch.div(picks, vocab, rounding_mode="floor"), totals, pad_token_id=ctx.pad,
                                eos_token_id=ctx.eos, beam_indices=history, decoder_prompt_len=prompt_len)
        beam_scores, history = advance_beams(batch, chosen, history)
        if stop_now(ctx, batch, scorer):
            break
    return finish(ctx, batch, scorer, beam_scores, history, prompt_len)
