"""Greedy tokens of a model kept in llama.cpp blocks against its dequantized twin (test_gptq.py, test_awq.py)."""
from __future__ import annotations

import torch


def assert_greedy_equal_but_near_ties(kept, dequantized, ids: torch.Tensor, steps: int, tolerance: float) -> None:
    """The two greedy runs give the same tokens, or they first part where the dequantized model's logits of its
    token and of the kept model's token are at most 2 x `tolerance` apart (the kept logits' error bound): a near-tie
    that the kernels' activation rounding may swap, not a wrong weight."""
    options = dict(max_new_tokens=steps, do_sample=False, pad_token_id=0)
    ours, theirs = kept.generate(ids, **options), dequantized.generate(ids, **options)
    if torch.equal(ours, theirs):
        return
    first = int((ours != theirs).nonzero()[0, 1])
    with torch.no_grad():
        logits = dequantized(theirs[:, :first]).logits[0, -1]
    gap = float(logits[theirs[0, first]] - logits[ours[0, first]])
    print(f"greedy runs part at new token {first - ids.shape[1] + 1}: a near-tie of {gap:.3g}")
    assert gap <= 2 * tolerance, f"tokens part at {first} with a logit gap of {gap:.3g} > 2 x {tolerance:.3g}"
