"""Next tokens for a whole batch of rows with different sampling parameters, in one vectorised pass.

Each row's settings become a column of per-row tensors ([R, 1]) and each warper is applied to every
row at once, masked to the rows that asked for it, with the formulas of 4.45's processors (same
order: logit bias, repetition penalty, the grammar mask of structured output (serving/grammar.py),
temperature, top-k, top-p, min-p), so a row's scores are what `generate()` would compute for that
request alone.

Draws: `torch.multinomial(probs, 1)` is argmax(probs / q) with q ~ Exp(1) drawn by `exponential_` on a
tensor shaped like `probs` (torch's one-sample fast path). Each row draws its own q from its own
generator (`Sequence.generator`, seeded from `SamplingParams.seed`) — V numbers per sampled token,
exactly what generate() draws from the global RNG — and the argmax runs on the whole batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .grammar import apply_grammar_mask
from .params import SamplingParams


@dataclass
class TokenLogprob:
    """The log-probability of a chosen token and of the `top` most likely alternatives (token id -> value)."""

    token_id: int
    logprob: float
    top: dict[int, float]


@dataclass
class SampledBatch:
    """The chosen token per row, and per-row logprobs (None where the row did not ask)."""

    tokens: list[int]
    logprobs: list[TokenLogprob | None]


def _column(values, device, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)[:, None]


class TokenHistory:
    """A sequence's ids (prompt then output) as a device tensor grown in place, so penalties never rebuild
    them from Python lists: each step copies only the ids added since the last one."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None
        self.length = 0

    def view(self, ids: list[int], device) -> torch.Tensor:
        """[len(ids)] long: `ids`, which extend what this history saw before."""
        if self.buffer is None or self.buffer.numel() < len(ids):
            grown = torch.empty(max(64, 2 * len(ids)), dtype=torch.long, device=device)
            if self.buffer is not None:
                grown[:self.length] = self.buffer[:self.length]
            self.buffer = grown
        if self.length < len(ids):
            self.buffer[self.length:len(ids)] = torch.tensor(ids[self.length:], dtype=torch.long)
            self.length = len(ids)
        return self.buffer[:len(ids)]


def _stacked(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D id tensors -> ids [R, L] padded with each row's first id (or 0), and a 0/1 weight [R, L]."""
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=-1)
    if ids.shape[1] == 0:
        ids = ids.new_full((len(rows), 1), -1)
    real = ids >= 0
    first = torch.where(real[:, :1], ids[:, :1], torch.zeros_like(ids[:, :1]))
    return torch.where(real, ids, first), real.to(torch.float32)


def apply_penalties(scores: torch.Tensor, params: list[SamplingParams], histories: list[torch.Tensor],
                    prompt_lens: list[int]) -> torch.Tensor:
    """Logit bias, repetition penalty (over prompt and output ids, 4.45's gather/scatter formula) and
    presence/frequency penalties (output ids); `histories[i]` [L_i] holds row i's prompt then output ids."""
    device = scores.device
    if any(p.logit_bias for p in params):
        rows, cols, vals = [], [], []
        for i, p in enumerate(params):
            for token, bias in (p.logit_bias or {}).items():
                rows.append(i), cols.append(token), vals.append(bias)
        index = (torch.tensor(rows, device=device), torch.tensor(cols, device=device))
        scores = scores.index_put(index, torch.tensor(vals, device=device), accumulate=True)
    if any(p.repetition_penalty != 1.0 for p in params):
        ids, _ = _stacked(histories)  # the padding repeats a real id: its value is written twice, identically
        penalty = _column([p.repetition_penalty for p in params], device)
        seen = torch.gather(scores, 1, ids)
        scores = scores.scatter(1, ids, torch.where(seen < 0, seen * penalty, seen / penalty))
    if any(p.presence_penalty or p.frequency_penalty for p in params):
        ids, weight = _stacked([h[n:] for h, n in zip(histories, prompt_lens)])
        counts = torch.zeros_like(scores).scatter_add_(1, ids, weight)
        scores = scores - _column([p.frequency_penalty for p in params], device) * counts \
            - _column([p.presence_penalty for p in params], device) * (counts > 0).float()
    return scores


def apply_warpers(scores: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """Temperature, top-k, top-p, min-p (4.45's formulas and order), each only on the rows that set it."""
    device, neg_inf = scores.device, -float("inf")
    if any(p.temperature != 1.0 for p in params):
        scores = scores / _column([p.temperature for p in params], device)
    if any(p.top_k for p in params):
        ks = [min(p.top_k, scores.shape[-1]) for p in params]
        top_k = torch.tensor(ks, device=device)
        largest = torch.topk(scores, max(ks), dim=-1).values  # [R, k_max], descending
        kth = largest.gather(1, (top_k - 1).clamp(min=0)[:, None])
        scores = scores.masked_fill((scores < kth) & (top_k > 0)[:, None], neg_inf)
    if any(p.top_p < 1.0 for p in params):
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= _column([1 - p.top_p for p in params], device)
        drop[..., -1:] = False
        drop &= torch.tensor([p.top_p < 1.0 for p in params], device=device)[:, None]
        scores = scores.masked_fill(drop.scatter(1, order, drop), neg_inf)
    if any(p.min_p > 0.0 for p in params):
        probs = torch.softmax(scores, dim=-1)
        drop = probs < _column([p.min_p for p in params], device) * probs.amax(dim=-1, keepdim=True)
        scores = scores.masked_fill(drop, neg_inf)
    return scores


def sample(logits: torch.Tensor, params: list[SamplingParams], histories: list[torch.Tensor], prompt_lens: list[int],
           generators: list[torch.Generator | None], fallback: torch.Generator,
           grammar_mask: tuple[torch.Tensor, torch.Tensor] | None = None) -> SampledBatch:
    """logits [R, V] float32 (raw model output) -> one token per row (one host read for the whole batch);
    `histories` / `prompt_lens` as for `apply_penalties`; `grammar_mask` (SequenceGrammars.bitmask) limits
    the grammar rows to their allowed tokens after the penalties, before greedy choice or the warpers."""
    scores = apply_grammar_mask(apply_penalties(logits, params, histories, prompt_lens), grammar_mask)
    greedy = [p.greedy for p in params]
    tokens = torch.argmax(scores, dim=-1)
    if not all(greedy):
        sampled_rows = [i for i, g in enumerate(greedy) if not g]
        rows = torch.tensor(sampled_rows, device=logits.device)
        warped = apply_warpers(scores[rows], [params[i] for i in sampled_rows])
        probs = torch.softmax(warped, dim=-1)
        noise = torch.empty_like(probs)
        for j, i in enumerate(sampled_rows):  # one draw of V numbers per row, from that row's generator
            noise[j].exponential_(generator=generators[i] or fallback)
        tokens = tokens.index_copy(0, rows, torch.argmax(probs / noise, dim=-1))
    return SampledBatch(tokens.tolist(), _logprobs(logits, tokens, params))


def _logprobs(logits: torch.Tensor, tokens: torch.Tensor, params: list[SamplingParams]) -> list[TokenLogprob | None]:
    wanted = [p.logprobs for p in params]
    if all(w is None for w in wanted):
        return [None] * len(params)
    top_n = max(w or 0 for w in wanted)
    if not top_n:  # the chosen token's log-probability alone: no [R, V] log-softmax written out
        chosen = (logits.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).tolist()
        return [None if w is None else TokenLogprob(t, c, {}) for w, t, c in zip(wanted, tokens.tolist(), chosen)]
    logp = torch.log_softmax(logits, dim=-1)
    chosen = logp.gather(1, tokens[:, None])[:, 0].tolist()
    top_values, top_ids = logp.topk(top_n, dim=-1)
    top_values, top_ids, token_list = top_values.tolist(), top_ids.tolist(), tokens.tolist()
    out: list[TokenLogprob | None] = []
    for i, w in enumerate(wanted):
        out.append(None if w is None else
                   TokenLogprob(token_list[i], chosen[i], dict(zip(top_ids[i][:w], top_values[i][:w]))))
    return out
