"""Which candidates a verification step accepts, for every row at once.

Inputs: candidates [R, N] (row r's first counts[r] are real), the main model's processed logits at
the N + 1 positions [R, N + 1, V] and `done` [R] (the candidate sequence already meets a stopping
rule: then the row keeps its last candidate instead of drawing one more token, as transformers does).
Output: accepted [R] candidates per row and the token that follows them [R]. `generated` [R] counts the
tokens each row already has: with per-row seeds it keys every draw to the token it decides.
"""
from __future__ import annotations

import torch


def _leading(ok: torch.Tensor) -> torch.Tensor:
    """[R, N] bool -> [R] length of the all-True prefix."""
    return ((~ok).cumsum(dim=-1) < 1).sum(dim=-1)


def accept_by_match(ctx, candidates: torch.Tensor, counts: torch.Tensor, logits: torch.Tensor,
                    done: torch.Tensor, do_sample: bool, generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep candidates while they equal the main model's own pick (argmax, or a draw when sampling)."""
    rows, width, vocab = logits.shape
    if do_sample:
        index = (generated[:, None] + torch.arange(width, device=logits.device)).reshape(-1)
        picks = ctx.sampler.multinomial(torch.softmax(logits, dim=-1).reshape(rows * width, vocab), 1,
                                        index=index, stream=3)
        picks = picks.view(rows, width)
    else:
        picks = logits.argmax(dim=-1)
    n = candidates.shape[1]
    valid = torch.arange(n, device=logits.device)[None, :] < counts[:, None]
    accepted = _leading((candidates == picks[:, :n]) & valid)
    keep_last = done & (accepted == counts) & (counts > 0)
    accepted = torch.where(keep_last, accepted - 1, accepted)
    return accepted, picks.gather(1, accepted[:, None]).squeeze(1)


def accept_speculative(ctx, candidates: torch.Tensor, counts: torch.Tensor, draft_scores: torch.Tensor,
                       logits: torch.Tensor, done: torch.Tensor,
                       generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Speculative sampling (https://arxiv.org/abs/2211.17192, algorithm 1): accept candidate i with
    probability min(1, p_i / q_i); after a rejection draw from max(p - q, 0), else from p."""
    rows, n = candidates.shape
    device = logits.device
    q = torch.softmax(draft_scores, dim=-1)                                 # [R, N, V]
    p = torch.softmax(logits, dim=-1)                                       # [R, N + 1, V]
    valid = torch.arange(n, device=device)[None, :] < counts[:, None]
    if n:
        q_i = q.gather(-1, candidates[..., None]).squeeze(-1)
        p_i = p[:, :n].gather(-1, candidates[..., None]).squeeze(-1)
        ratio = p_i / q_i
        draws = ctx.sampler.rand_like(ratio, index=generated[:, None] + torch.arange(n, device=device), stream=2)
        accepted = _leading((draws <= ratio) & valid)
    else:
        accepted = torch.zeros(rows, dtype=torch.long, device=device)
    keep_last = done & (accepted == counts) & (counts > 0)
    fallback = candidates.gather(1, (accepted - 1).clamp(min=0)[:, None]).squeeze(1) if n else accepted
    if bool(keep_last.all()):  # nothing to draw (transformers draws nothing either)
        return accepted - 1, fallback
    p_next = p.gather(1, accepted[:, None, None].expand(-1, 1, p.shape[-1])).squeeze(1)
    if n:
        q_next = q.gather(1, accepted.clamp(max=n - 1)[:, None, None].expand(-1, 1, q.shape[-1])).squeeze(1)
        residual = torch.clamp(p_next - q_next, min=0)
        residual = residual / residual.sum(dim=-1, keepdim=True)
        p_next = torch.where((accepted < counts)[:, None], residual, p_next)
    drawn = ctx.sampler.multinomial(p_next, 1, index=generated + accepted, stream=3).squeeze(1)
    return torch.where(keep_last, accepted - 1, accepted), torch.where(keep_last, fallback, drawn)
