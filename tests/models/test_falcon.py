"""Falcon-RW's ALiBi: formers adds the bias once, as trained; 4.45.2's eager path adds it twice."""
from __future__ import annotations

import torch
import transformers

import formers

from .cases.falcon import CASES
from .family_checks import build, max_diff, padded_batch


def test_alibi_once_equals_4_45_sdpa_and_twice_equals_4_45_eager(tmp_path, monkeypatch):
    folder = build(CASES["falcon-rw-alibi"], tmp_path)
    ids, mask = padded_batch(length=16)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    their_sdpa = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    their_eager = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    with torch.no_grad():
        once = ours(ids, attention_mask=mask).logits
        assert max_diff(once, their_sdpa(ids, attention_mask=mask).logits, mask) <= 1e-5
        eager = their_eager(ids, attention_mask=mask).logits
        assert max_diff(once, eager, mask) > 1e-3  # the two 4.45 kernels really disagree
        single = type(ours.model).score_bias
        monkeypatch.setattr(type(ours.model), "score_bias", lambda self, *args: 2 * single(self, *args))
        assert max_diff(ours(ids, attention_mask=mask).logits, eager, mask) <= 1e-5
