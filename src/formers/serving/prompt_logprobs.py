"""Prompt logprobs (what OpenAI's completions return with `echo` and `logprobs`): for every prompt token
after the first, its log-probability given the tokens before it, and the `top` likeliest alternatives.

The engine's steps keep only the positions that sample, and a prompt served from the prefix cache is
not computed at all, so the prompt is scored by one plain forward of the model (no cache) on the
engine thread, between steps (`AsyncEngine.call`), from the raw logits like the engine's logprobs.
"""
from __future__ import annotations

import torch

from ..errors import ServingError
from .engine import LLMEngine
from .sampler import TokenLogprob


@torch.no_grad()
def prompt_logprobs(engine: LLMEngine, prompt: list[int], top: int) -> list[TokenLogprob]:
    """TokenLogprob of prompt[1:] (one per token; prompt[0] has none), with `top` alternatives each."""
    if not isinstance(engine, LLMEngine):
        raise ServingError(f"prompt logprobs (echo with logprobs) need a single-process LLMEngine, not "
                           f"{type(engine).__name__}")
    if len(prompt) < 2:
        return []
    ids = torch.tensor([prompt], dtype=torch.long, device=engine.device)
    logits = engine.model(input_ids=ids, use_cache=False).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    targets = ids[0, 1:]
    chosen = logp.gather(1, targets[:, None])[:, 0].tolist()
    top_values, top_ids = logp.topk(top, dim=-1) if top else (logp[:, :0], targets[:, None][:, :0])
    top_values, top_ids = top_values.tolist(), top_ids.tolist()
    return [TokenLogprob(token, value, dict(zip(alt_ids, alt_values)))
            for token, value, alt_ids, alt_values in zip(prompt[1:], chosen, top_ids, top_values)]
