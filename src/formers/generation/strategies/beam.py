"""Beam search and beam sampling (transformers' `_beam_search`), scored on the device.

Each step: log-softmax the last logits of all B*K beams, run the processors, add the running beam
scores, then pick 2K (more with several EOS ids) candidates per prompt over its K*V continuations
(top-k, or multinomial draws sorted by score when sampling) and let the scorer choose the next beams.
The only host read per step is "every prompt done, or a stopping criterion fired everywhere?".
"""
from __future__ import annotations

import torch

from ..beam_search import BeamSearchScorer
from .sample import start_batch


def candidate_count(ctx, beams: int) -> int:
    """Candidates kept per prompt: enough that `beams` of them are not EOS."""
    n_eos = ctx.eos.shape[0] if ctx.eos is not None else 0
    return max(2, 1 + n_eos) * beams


def initial_beam_scores(prompts: int, beams: int, device) -> torch.Tensor:
    """[prompts * beams]: only the first beam's continuations compete at the first step."""
    scores = torch.zeros((prompts, beams), dtype=torch.float, device=device)
    scores[:, 1:] = -1e9
    return scores.view(-1)


def new_history(ctx, rows: int, device) -> torch.Tensor | None:
    """Beam-index histories [rows, 0], tracked when scores are returned (as transformers)."""
    config = ctx.config
    if config.return_dict_in_generate and config.output_scores:
        return torch.zeros((rows, 0), dtype=torch.long, device=device)
    return None


def start_beams(ctx, prompt, cache):
    """-> (running batch with each prompt repeated per beam, initial beam scores, index history or None,
    candidates kept per prompt per step)."""
    beams, prompts, device = ctx.config.num_beams, prompt.batch_size, prompt.device
    batch = start_batch(ctx, prompt, cache, beams, sample_per_row=False)
    return (batch, initial_beam_scores(prompts, beams, device), new_history(ctx, prompts * beams, device),
            candidate_count(ctx, beams))


def beam_log_probs(ctx, batch):
    """One forward of all beams -> (model output, last-position logits [N, V], processed log-probs [N, V])."""
    out = batch.forward(ctx.model, output_attentions=ctx.config.output_attentions,
                        output_hidden_states=ctx.config.output_hidden_states)
    logits = out.logits[:, -1, :].float()
    return out, logits, ctx.processors(batch.tokens(), torch.log_softmax(logits, dim=-1))


def advance_beams(batch, chosen: dict, history: torch.Tensor | None):
    """Move the running beams to the scorer's choice -> (new beam scores, beam-index history)."""
    source = chosen["next_beam_indices"]
    batch.reorder(source)
    batch.append(chosen["next_beam_tokens"])
    if history is not None:
        history = torch.cat([history[source], source[:, None]], dim=-1)
    return chosen["next_beam_scores"], history


def finish(ctx, batch, scorer, beam_scores, history, prompt_len: int):
    """Finalize the scorer into the beam output (scores and indices only when scores were recorded)."""
    out = scorer.finalize(batch.tokens(), beam_scores, None, None, max_length=ctx.criteria.max_length,
                          pad_token_id=ctx.pad, eos_token_id=ctx.eos, beam_indices=history,
                          decoder_prompt_len=prompt_len)
    track = history is not None
    sequences = out["sequences"]
    if batch.offset:  # embeds-only prompt: transformers returns the new tokens only
        sequences = sequences[:, batch.prompt_len:]
    return ctx.recorder.beam(sequences, out["sequence_scores"] if track else None,
                             out["beam_indices"] if track else None, batch.cache)


def stop_now(ctx, batch, scorer) -> bool:
    """The one host read per step: all prompts done, every row stopped, or the buffer is full."""
    if batch.cur >= batch.capacity:
        return True
    stopped = ctx.criteria(batch.tokens(), ctx.recorder.scores_so_far()).all()
    return bool(scorer.is_done | stopped)


def run_beam_search(ctx, prompt, cache):
    config, rec = ctx.config, ctx.recorder
    beams, prompts, device = config.num_beams, prompt.batch_size, prompt.device
    scorer = BeamSearchScorer(prompts, beams, device, length_penalty=config.length_penalty,
                              do_early_stopping=config.early_stopping,
                              num_beam_hyps_to_keep=config.num_return_sequences, max_length=config.max_length)
    batch, beam_scores, history, n_cands = start_beams(ctx, prompt, cache)
    prompt_len = batch.cur
    while True:
        out, logits, processed = beam_log_probs(ctx, batch)
        rec.add(processed, logits, out)
        vocab = processed.shape[-1]
        totals = (processed + beam_scores[:, None]).view(prompts, beams * vocab)
        if config.do_sample:
            # nan_to_num: a prompt with no finite continuation left (a grammar allowing only EOS, whose EOS
            # beams already finished) draws -inf candidates uniformly instead of failing on NaN
            picks = ctx.sampler.multinomial(torch.softmax(totals, dim=-1).nan_to_num(nan=1.0), n_cands)
            cand_scores, order = torch.sort(totals.gather(-1, picks), descending=True, dim=1)
            picks = picks.gather(-1, order)
        else:
            cand_scores, picks = torch.topk(totals, n_cands, dim=1, largest=True, sorted=True)
        chosen = scorer.process(batch.tokens(), cand_scores, picks % vocab, torch.div(picks, vocab,
                                rounding_mode="floor"), pad_token_id=ctx.pad, eos_token_id=ctx.eos,
                                beam_indices=history, decoder_prompt_len=prompt_len)
        beam_scores, history = advance_beams(batch, chosen, history)
        if stop_now(ctx, batch, scorer):
            break
    return finish(ctx, batch, scorer, beam_scores, history, prompt_len)
