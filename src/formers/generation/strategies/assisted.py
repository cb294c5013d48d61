"""Assisted decoding: a draft model or prompt lookup proposes tokens, one forward pass of the main model
checks them all (transformers' `_assisted_decoding`), for any batch size.

One verification step: candidates [R, N] go after each row's last token; the main model scores the
N + 1 positions at once; each row keeps its candidates up to the first the main model would not have
produced (or, when sampling with a draft, per speculative sampling) plus the main model's next token.
Rows advance by different amounts (see `ragged.py`); a row that finishes leaves the batch. Greedy
output equals running each row alone. With one row every choice, draw and recorded output follows
transformers 4.45. The host reads a handful of small tensors per verification step, not per token.
"""
from __future__ import annotations

import torch

from ...errors import GenerationError
from ..step import call_model
from ..stopping_criteria import EosTokenCriteria, MaxLengthCriteria
from .candidates import AssistedCandidateGenerator, PromptLookupCandidateGenerator
from .ragged import RaggedBatch
from .speculative import accept_by_match, accept_speculative


def _generator(ctx):
    config = ctx.config
    if ctx.assistant_model is not None:
        return AssistedCandidateGenerator(ctx, ctx.assistant_model)
    return PromptLookupCandidateGenerator(ctx.eos, config.prompt_lookup_num_tokens, config.max_matching_ngram_size,
                                          config.max_length)


class _Outputs:
    """Per-token outputs of assisted decoding: transformers' layout for one row; for batches the scores
    are regrouped so entry j holds every row's j-th new token (zeros past a row's end)."""

    def __init__(self, ctx, batch: RaggedBatch, fresh_cache: bool):
        self.rec, self.batch, self.first = ctx.recorder, batch, fresh_cache
        self.single = batch.rows == 1
        if not self.single and (self.rec.attentions is not None or self.rec.hidden_states is not None):
            raise GenerationError("output_attentions / output_hidden_states are not available with batched "
                                  "assisted decoding; decode one row at a time to get them")
        self.table: torch.Tensor | None = None   # [B, max_new, V] batched scores

    def add(self, processed, raw, out, accepted_host, width_before: int, generated_before: list[int]) -> None:
        rec = self.rec
        if rec.logits is not None:
            rec.logits.append(raw)
        if self.single:
            n = accepted_host[0]
            if rec.scores is not None:
                rec.scores.extend(processed[:, i, :] for i in range(n + 1))
            added = width_before + n + 1 if self.first else n + 1
            if rec.attentions is not None:
                _split(rec.attentions, out.attentions, width_before, added, attention=True)
            if rec.hidden_states is not None:
                _split(rec.hidden_states, out.hidden_states, width_before, added, attention=False)
            self.first = False
            return
        if rec.scores is not None:
            if self.table is None:
                self.table = processed.new_zeros((len(self.batch.prompt), self.batch.max_new, processed.shape[-1]))
            rows, steps, cols = [], [], []
            for row, (n, done) in enumerate(zip(accepted_host, generated_before)):
                rows += [self.batch.origin[row]] * (n + 1)
                steps += range(done, done + n + 1)
                cols += [(row, i) for i in range(n + 1)]
            src = torch.tensor(cols, device=processed.device)
            self.table[rows, steps] = processed[src[:, 0], src[:, 1]]

    def finish(self) -> None:
        if self.table is not None:
            longest = max(len(t) for t in self.batch.finished.values())
            self.rec.scores.extend(self.table[:, j] for j in range(longest))


def _split(store: list, layers, cur_len: int, added: int, attention: bool) -> None:
    """transformers' per-token split of a multi-token forward's attentions / hidden states."""
    if not store:
        store.append(tuple(layer[..., :cur_len, :cur_len if attention else layer.shape[-1]] for layer in layers))
        cur_len += 1
        added -= cur_len
    for i in range(added):
        store.append(tuple(layer[..., i:i + 1, :cur_len + i if attention else layer.shape[-1]] for layer in layers))


def run_assisted(ctx, prompt, cache):
    config, model = ctx.config, ctx.model
    if prompt.inputs_embeds is not None:
        raise GenerationError("assisted decoding needs the prompt as input_ids, not inputs_embeds")
    prompt_width = prompt.input_ids.shape[1]
    if cache.recurrent and prompt.batch_size > 1:  # holes would still change the state (see ragged.py)
        raise GenerationError(f"assisted decoding with {type(model).__name__} (a recurrent state cache) runs "
                              f"one row at a time; got a batch of {prompt.batch_size}")
    batch = RaggedBatch(prompt.input_ids, prompt.attention_mask, config.max_length - prompt_width, ctx.fill)
    generator = _generator(ctx)
    seen = cache.get_seq_length()
    outputs = _Outputs(ctx, batch, fresh_cache=seen == 0)
    other_criteria = [c for c in ctx.criteria if not isinstance(c, (MaxLengthCriteria, EosTokenCriteria))]
    processors, eos = ctx.processors, ctx.eos
    while True:
        proposal = generator.propose(batch)
        n = proposal.tokens.shape[1]
        ragged = any(c < n for c in proposal.counts_host)  # some rows propose fewer: mask their filler
        batch.write(proposal.tokens, counts=proposal.counts if ragged else None)
        end = batch.width + n
        if model.needs_cache_refill(seen, end):  # stale keys (Phi3 past its trained length): feed all again
            cache.reset()
            seen = 0
        cache.checkpoint()  # state caches roll back to here (caches of keys crop instead)
        out = call_model(model, input_ids=batch.ids[:, seen:end], attention_mask=batch.mask_upto(end),
                         position_ids=batch.pos[:, seen:end], cache=cache,
                         cache_position=torch.arange(seen, end, device=batch.device), keep=n + 1,
                         output_attentions=config.output_attentions,
                         output_hidden_states=config.output_hidden_states)
        raw = out.logits[:, -(n + 1):].float()
        processed = raw
        if len(processors) > 0:
            processed = torch.stack([processors(batch.tokens(i, proposal.counts_host), raw[:, i])
                                     for i in range(n + 1)], dim=1)
        done = _candidates_done(ctx, batch, proposal, other_criteria)
        generated = torch.tensor(batch.generated_host, device=batch.device)
        if config.do_sample and proposal.scores is not None:
            accepted, follow = accept_speculative(ctx, proposal.tokens, proposal.counts, proposal.scores,
                                                  processed, done, generated)
        else:
            accepted, follow = accept_by_match(ctx, proposal.tokens, proposal.counts, processed, done,
                                               bool(config.do_sample), generated)
        accepted, follow = _within_budget(batch, proposal.tokens, accepted, follow)
        ends = torch.isin(follow, eos) if eos is not None else torch.zeros_like(accepted, dtype=torch.bool)
        accepted_host, ends_host = torch.stack([accepted, ends.long()]).tolist()  # the step's one host read
        width_before, generated_before = batch.width, list(batch.generated_host)
        batch.commit(accepted, accepted_host, follow)
        seen = cache.rewind(batch.width - 1)  # a state cache lands earlier: the next forward re-feeds the rest
        generator.accepted(batch, accepted_host)
        outputs.add(processed, raw, out, accepted_host, width_before, generated_before)
        if ctx.streamer is not None:
            ctx.stream(torch.cat([proposal.tokens[0, :accepted_host[0]], follow[:1]]))
        finished = _rows_done(ctx, batch, ends_host, other_criteria)
        if all(finished):
            break
        kept = batch.retire(finished)
        if kept is not None:
            cache.batch_select_indices(kept)
            generator.select_rows(kept)
            ctx.sampler.select_rows(kept)
    generator.finish()
    batch.retire([True] * batch.rows)
    outputs.finish()
    return ctx.recorder.decoder_only(batch.output(), cache)


def _within_budget(batch: RaggedBatch, candidates, accepted, follow):
    """No row takes more tokens than its length budget: one accepting too many candidates stops at its
    budget, ending on an accepted candidate."""
    budget = torch.tensor(batch.budget(), device=batch.device)
    over = accepted > budget - 1
    capped = torch.where(over, budget - 1, accepted)
    if candidates.shape[1]:
        last = candidates.gather(1, capped.clamp(max=candidates.shape[1] - 1)[:, None]).squeeze(1)
        follow = torch.where(over, last, follow)
    return capped, follow


def _candidates_done(ctx, batch: RaggedBatch, proposal, other_criteria) -> torch.Tensor:
    """[R] a row's candidate sequence already meets a stopping rule (EOS last, length, other criteria)."""
    counts = proposal.counts
    done = torch.tensor([g + c >= batch.max_new for g, c in zip(batch.generated_host, proposal.counts_host)],
                        device=batch.device)
    if ctx.eos is not None and proposal.tokens.shape[1]:
        last = proposal.tokens.gather(1, (counts - 1).clamp(min=0)[:, None]).squeeze(1)
        done |= torch.isin(last, ctx.eos) & (counts > 0)
    if other_criteria:
        view = batch.tokens(proposal.tokens.shape[1], proposal.counts_host)
        for criterion in other_criteria:
            done |= criterion(view, None)
    return done


def _rows_done(ctx, batch: RaggedBatch, ends_host: list[int], other_criteria) -> list[bool]:
    """Per row: EOS, its length budget, or another stopping criterion (those cost one more host read)."""
    done = [bool(e) or g >= batch.max_new for e, g in zip(ends_host, batch.generated_host)]
    if other_criteria:
        view = batch.tokens()
        flags = torch.zeros(batch.rows, dtype=torch.bool, device=batch.device)
        for criterion in other_criteria:
            flags |= criterion(view, ctx.recorder.scores_so_far())
        done = [d or f for d, f in zip(done, flags.tolist())]
    return done
