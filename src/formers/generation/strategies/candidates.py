"""Candidate generators for assisted decoding: a draft model, or n-gram lookup in the text so far.

Both work on a `RaggedBatch` and return, per row, up to N candidate tokens (rows may propose fewer:
`counts`), plus the draft's processed scores when speculative sampling needs them. Their choices
follow transformers 4.45 (which supports one row): the draft runs greedy/sampled steps with the main
config's processors, stops a row on EOS, low confidence or its length budget, and proposes
`num_assistant_tokens` (read from, and with the "heuristic" schedule written back to, the draft
model's generation config); prompt lookup takes the continuation of the earliest earlier occurrence
of the longest matching tail n-gram.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ...errors import GenerationError
from ..logits_builder import build_logits_processor
from ..logits_process import MinLengthLogitsProcessor
from ..step import call_model
from .ragged import RaggedBatch


@dataclass
class Proposal:
    tokens: torch.Tensor              # [R, N] candidates (columns past a row's count are filler)
    counts: torch.Tensor              # [R] candidates per row
    counts_host: list[int]
    scores: torch.Tensor | None       # [R, N, V] the draft's processed scores (speculative sampling)


def _empty(batch: RaggedBatch) -> Proposal:
    rows = batch.rows
    return Proposal(torch.empty((rows, 0), dtype=torch.long, device=batch.device),
                    torch.zeros(rows, dtype=torch.long, device=batch.device), [0] * rows, None)


class CandidateGenerator:
    """Proposes candidates for each active row; told how many were accepted."""

    def propose(self, batch: RaggedBatch) -> Proposal:
        raise NotImplementedError(f"{type(self).__name__} must implement propose()")

    def accepted(self, batch: RaggedBatch, accepted_host: list[int]) -> None:
        """After `batch.commit`: adapt to the outcome (default: nothing)."""

    def select_rows(self, index: torch.Tensor) -> None:
        """Rows were retired; keep the state of `index` (default: nothing)."""

    def finish(self) -> None:
        """The generate() call ends (default: nothing)."""


class AssistedCandidateGenerator(CandidateGenerator):
    """Candidates from a smaller draft model with the same vocabulary, run with its own cache."""

    def __init__(self, ctx, assistant_model):
        main = ctx.config
        self.ctx = ctx
        self.assistant_model = assistant_model
        draft_config = assistant_model.generation_config
        draft_config.eos_token_id = main.eos_token_id  # as transformers 4.45 does
        self.num_assistant_tokens = draft_config.num_assistant_tokens
        self.schedule = draft_config.num_assistant_tokens_schedule
        self.confidence = draft_config.assistant_confidence_threshold
        if any(isinstance(p, MinLengthLogitsProcessor) for p in ctx.user_processors):
            raise GenerationError("Passing `MinLengthLogitsProcessor` when using assisted generation is not "
                                  "allowed: pass `min_length` to generate() instead")
        self.config = copy.deepcopy(main)
        self.config.return_dict_in_generate, self.config.output_scores = True, True
        self.config.is_assistant = True
        self.config.assistant_confidence_threshold = self.confidence
        self.main_min_length = main.min_length
        self.config.min_length, self.config.min_new_tokens = 0, None
        self.cache = None  # the draft's own kind of cache, made for the first batch
        self.seen = 0

    def _processors(self, batch: RaggedBatch, length: int, max_new: int, min_new: int):
        config = copy.copy(self.config)
        config.max_length, config.min_length = length + max_new, length + min_new
        config.min_new_tokens = min_new
        return build_logits_processor(config, length, self.ctx.eos, batch.device, self.ctx.user_processors,
                                      encoder_input_ids=batch.tokens(), model=self.assistant_model)

    def propose(self, batch: RaggedBatch) -> Proposal:
        caps = [b - 1 for b in batch.budget()]
        length = batch.tokens().shape[1]
        max_new = min(int(self.num_assistant_tokens), max(caps))
        if max_new <= 0:
            return _empty(batch)
        min_new = max(min(max_new, self.main_min_length - length), 0)
        processors = self._processors(batch, length, max_new, min_new)
        cap = torch.tensor(caps, device=batch.device).clamp(max=max_new)
        stopped = cap <= 0
        counts = torch.zeros(batch.rows, dtype=torch.long, device=batch.device)
        generated = torch.tensor(batch.generated_host, device=batch.device)
        if self.cache is None:
            draft = self.assistant_model
            self.cache = draft.make_generation_cache(batch.rows, self.ctx.config.max_length, draft.device, draft.dtype)
        scores, eos, step = [], self.ctx.eos, 0
        while step < max_new:
            end = batch.width + step
            self.cache.checkpoint()  # a state cache rolls back to one of these
            out = call_model(self.assistant_model, input_ids=batch.ids[:, self.seen:end],
                             attention_mask=batch.mask_upto(end), position_ids=batch.pos[:, self.seen:end],
                             cache=self.cache, cache_position=torch.arange(self.seen, end, device=batch.device))
            self.seen = end
            step_scores = processors(batch.tokens(step), out.logits[:, -1, :].float())
            if self.config.do_sample:
                token = self.ctx.sampler.multinomial(torch.softmax(step_scores, dim=-1), 1, index=generated + step,
                                                     stream=1).squeeze(1)
            else:
                token = torch.argmax(step_scores, dim=-1)
            token = torch.where(stopped, torch.as_tensor(self.ctx.fill, device=batch.device), token)
            batch.write(token[:, None], start_offset=step)
            scores.append(step_scores)
            counts += (~stopped).long()
            step += 1
            stop = stopped | (counts >= cap)
            if eos is not None:
                stop |= torch.isin(token, eos)
            if self.confidence is not None and self.confidence > 0:
                prob = torch.softmax(step_scores, dim=-1).gather(1, token[:, None]).squeeze(1)
                stop |= prob < self.confidence
            stopped = stop
            if bool(stopped.all()):
                break
        counts_host = counts.tolist()
        return Proposal(batch.ids[:, batch.width:batch.width + step].clone(), counts, counts_host,
                        torch.stack(scores, dim=1))

    def accepted(self, batch: RaggedBatch, accepted_host: list[int]) -> None:
        # re-feed (at least) the last accepted candidate and the bonus token
        self.seen = self.cache.rewind(batch.width - 2)
        if self.schedule in ("heuristic", "heuristic_transient"):
            if all(a == int(self.num_assistant_tokens) for a in accepted_host):
                self.num_assistant_tokens += 2.0
            else:
                self.num_assistant_tokens = max(1.0, self.num_assistant_tokens - 1.0)

    def select_rows(self, index: torch.Tensor) -> None:
        if self.cache is not None and self.cache.get_seq_length() > 0:
            self.cache.batch_select_indices(index)

    def finish(self) -> None:
        if self.schedule == "heuristic":  # persists across calls, as in transformers
            self.assistant_model.generation_config.num_assistant_tokens = self.num_assistant_tokens


class PromptLookupCandidateGenerator(CandidateGenerator):
    """Candidates copied from the row's own text: after the earliest earlier occurrence of its last
    n tokens (n from `max_matching_ngram_size` down to 1), up to `num_output_tokens`, cut at EOS."""

    def __init__(self, eos_token_id: torch.Tensor | None = None, num_output_tokens: int = 10,
                 max_matching_ngram_size: int | None = None, max_length: int = 20):
        self.num_output_tokens = num_output_tokens
        self.max_matching_ngram_size = max_matching_ngram_size if max_matching_ngram_size else 2
        self.max_length = max_length
        self.eos_token_id = eos_token_id
        if self.max_matching_ngram_size <= 0 or self.num_output_tokens <= 0:
            raise GenerationError("Invalid max_matching_ngram_size or num_output_tokens: both must be positive")

    def propose(self, batch: RaggedBatch) -> Proposal:
        view = batch.tokens()                                              # [R, L]
        rows, length = view.shape
        device = view.device
        first_real = length - batch.real_len                                # [R] columns before are padding
        start = torch.full((rows,), -1, dtype=torch.long, device=device)
        for size in range(min(self.max_matching_ngram_size, length - 1), 0, -1):
            windows = view.unfold(1, size, 1)                               # [R, L - size + 1, size]
            idx = torch.arange(windows.shape[1], device=device)
            hit = (windows == view[:, -size:][:, None, :]).all(-1)
            hit &= (idx[None, :] >= first_real[:, None]) & (idx[None, :] + size < length)
            found = hit.any(-1) & (start < 0)
            start = torch.where(found, hit.long().argmax(-1) + size, start)
        # as transformers: as many as the text holds (even past the length budget; the verification step
        # never accepts beyond it), none when a single token is left
        has_room = torch.tensor([b > 1 for b in batch.budget()], device=device)
        counts = torch.clamp(length - start, max=self.num_output_tokens)
        counts = torch.where((start >= 0) & has_room, counts, 0)
        width = self.num_output_tokens
        cols = start.clamp(min=0)[:, None] + torch.arange(width, device=device)
        tokens = view.gather(1, cols.clamp(max=length - 1))
        inside = torch.arange(width, device=device)[None, :] < counts[:, None]
        if self.eos_token_id is not None:
            is_eos = torch.isin(tokens, self.eos_token_id.to(device)) & inside
            counts = torch.where(is_eos.any(-1), is_eos.long().argmax(-1), counts)
        counts_host = counts.tolist()
        n = max(counts_host)
        if n == 0:
            return _empty(batch)
        tokens = torch.where(torch.arange(n, device=device)[None, :] < counts[:, None], tokens[:, :n],
                             torch.as_tensor(batch.fill, device=device))
        return Proposal(tokens, counts, counts_host, None)
