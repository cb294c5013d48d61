"""Contrastive search (https://arxiv.org/abs/2202.06417; transformers' `_contrastive_search`).

Each step takes the top-k next tokens, runs the model on all k candidates of every row at once (the
cache holds k copies of each row), and picks per row the candidate maximising
(1 - alpha) * p(token) - alpha * max cosine(candidate hidden state, previous hidden states).
The chosen candidate's cache row then replaces its siblings in one reorder (transformers selects and
re-repeats: two full copies). `low_memory=True` runs the k candidates one after another instead.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from ...errors import GenerationError
from ..step import call_model
from .sample import start_batch


def _normalise(hidden: torch.Tensor) -> torch.Tensor:
    return hidden / hidden.norm(dim=-1, keepdim=True)


def rank_candidates(context: torch.Tensor, candidates: torch.Tensor, probs: torch.Tensor,
                    mask: torch.Tensor | None, alpha: float, k: int) -> torch.Tensor:
    """context [B, S, C] (normalised), candidates [B*k, 1, C] (normalised), probs [B, k], mask [B, S]
    -> index [B] of the best candidate per row."""
    cosine = torch.matmul(context.repeat_interleave(k, dim=0), candidates.transpose(1, 2)).squeeze(-1)  # [B*k, S]
    if mask is not None:
        mask = mask.repeat_interleave(k, dim=0).to(cosine.dtype)
        cosine = cosine + (1 - mask) * torch.finfo(cosine.dtype).min
    penalty = cosine.max(dim=-1).values
    score = (1.0 - alpha) * probs.reshape(-1) - alpha * penalty
    return score.view(-1, k).max(dim=-1).indices


def _pick(tensors, selected: torch.Tensor, k: int):
    """From per-candidate tensors [B*k, ...] keep the selected candidate of each row -> [B, ...]."""
    rows = torch.arange(selected.shape[0], device=selected.device) * k + selected
    return tuple(t.index_select(0, rows) for t in tensors) if tensors is not None else None


def _candidates_batched(ctx, batch, top_ids, k: int):
    """Forward every row's k candidates in one call; the cache holds k copies of each row."""
    start = batch.seq_len
    mask = batch.mask_upto(start + 1)
    positions = batch.positions[:, start:start + 1] if batch.positions is not None else None
    return call_model(
        ctx.model, input_ids=top_ids.reshape(-1, 1), attention_mask=mask.repeat_interleave(k, dim=0)
        if mask is not None else None, position_ids=positions.repeat_interleave(k, dim=0)
        if positions is not None else None, cache=batch.cache,
        cache_position=torch.arange(start, start + 1, device=top_ids.device), keep=1,
        output_attentions=ctx.config.output_attentions, output_hidden_states=True)


def _candidates_sequential(ctx, batch, top_ids, k: int):
    """low_memory: one candidate column at a time on the unexpanded cache, outputs stacked row-major."""
    start = batch.seq_len
    mask, positions = batch.mask_upto(start + 1), None
    if batch.positions is not None:
        positions = batch.positions[:, start:start + 1]
    outs = []
    for i in range(k):
        outs.append(call_model(ctx.model, input_ids=top_ids[:, i:i + 1], attention_mask=mask,
                               position_ids=positions, cache=batch.cache,
                               cache_position=torch.arange(start, start + 1, device=top_ids.device), keep=1,
                               output_attentions=ctx.config.output_attentions, output_hidden_states=True))
        batch.cache.crop(start)

    def stacked(values):  # [k][B, ...] -> [B*k, ...] with row b*k + i
        return torch.stack(values, dim=1).flatten(0, 1)
    attentions = None
    if outs[0].attentions is not None:
        attentions = tuple(stacked([o.attentions[j] for o in outs]) for j in range(len(outs[0].attentions)))
    return SimpleNamespace(
        logits=stacked([o.logits for o in outs]), attentions=attentions,
        hidden_states=tuple(stacked([o.hidden_states[j] for o in outs]) for j in range(len(outs[0].hidden_states))))


def run_contrastive_search(ctx, prompt, cache):
    config, rec, model = ctx.config, ctx.recorder, ctx.model
    k, alpha, sequential = config.top_k, config.penalty_alpha, bool(config.low_memory)
    batch = start_batch(ctx, prompt, cache)
    if batch.seen:
        raise GenerationError("contrastive search needs the hidden states of the whole prompt: pass an empty "
                              "`past_key_values` (or none)")
    rows, device = batch.rows, batch.ids.device
    out = batch.forward(model, output_attentions=config.output_attentions, output_hidden_states=True)
    context = torch.empty((rows, batch.capacity + batch.offset, out.hidden_states[-1].shape[-1]),
                          dtype=out.hidden_states[-1].dtype, device=device)
    context[:, :batch.seq_len] = _normalise(out.hidden_states[-1])
    logits = out.logits[:, -1, :].float()
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    expanded = False
    while batch.cur < batch.capacity:
        scores = ctx.processors(batch.tokens(), logits)
        top_probs, top_ids = torch.topk(torch.softmax(scores, dim=-1), dim=-1, k=k)
        rec.add(scores, logits, out)
        if sequential:
            cand = _candidates_sequential(ctx, batch, top_ids, k)
        else:
            if not expanded:
                batch.cache.batch_repeat_interleave(k)
                expanded = True
            cand = _candidates_batched(ctx, batch, top_ids, k)
        seen = batch.seq_len
        hidden = _normalise(cand.hidden_states[-1])                                        # [B*k, 1, C]
        selected = rank_candidates(context[:, :seen], hidden, top_probs, batch.mask_upto(seen), alpha, k)
        next_tokens = top_ids.gather(1, selected[:, None]).squeeze(1)
        context[:, seen] = _pick((hidden[:, 0],), selected, k)[0]
        logits = _pick((cand.logits[:, -1, :].float(),), selected, k)[0]
        out = SimpleNamespace(hidden_states=_pick(cand.hidden_states, selected, k),
                              attentions=_pick(cand.attentions, selected, k))
        if sequential:  # re-run the chosen token to put it in the cache
            call_model(model, input_ids=next_tokens[:, None], attention_mask=batch.mask_upto(seen + 1),
                       position_ids=batch.positions[:, seen:seen + 1] if batch.positions is not None else None,
                       cache=batch.cache, cache_position=torch.arange(seen, seen + 1, device=device))
        else:  # every copy of a row takes the chosen candidate's cache row
            chosen = torch.arange(rows, device=device) * k + selected
            batch.cache.reorder_cache(chosen.repeat_interleave(k))
        if ctx.pad_finished_rows:
            next_tokens = torch.where(unfinished, next_tokens, ctx.fill)
        batch.append(next_tokens)
        batch.seen = batch.seq_len
        ctx.stream(next_tokens)
        unfinished &= ~ctx.criteria(batch.tokens(), rec.scores_so_far())
        if not bool(unfinished.any()):
            break
    if expanded:
        batch.cache.batch_select_indices(torch.arange(rows, device=device) * k)
    if config.return_dict_in_generate:
        batch.cache.crop(-1)  # the last step cached one position beyond the output, as in transformers
    return rec.decoder_only(batch.sequences(), batch.cache)
