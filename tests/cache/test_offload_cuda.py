"""Offloading on a real GPU (skipped without CUDA): same greedy tokens as the DynamicCache, layers kept in
pinned CPU memory. On CPU-only machines the offloaded caches are covered by test_parity.py."""
from __future__ import annotations

import pytest
import torch

import formers

from .conftest import padded_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("implementation", ["offloaded", "offloaded_static"])
@pytest.mark.parametrize("rows", [1, 3])
def test_offloaded_caches_on_cuda_match_dynamic_cache(llama_dir, implementation, rows):
    model = formers.AutoModelForCausalLM.from_pretrained(llama_dir).to("cuda")
    ids, mask = padded_batch(rows)
    kwargs = dict(attention_mask=mask.cuda(), max_new_tokens=30, do_sample=False, pad_token_id=0,
                  return_dict_in_generate=True)
    expected = model.generate(ids.cuda(), **kwargs).sequences
    out = model.generate(ids.cuda(), cache_implementation=implementation, **kwargs)
    assert torch.equal(out.sequences, expected)
    cache = out.past_key_values
    offloaded = cache._keys[1] if implementation == "offloaded" else cache.key_cache[1]
    assert offloaded.device.type == "cpu" and offloaded.is_pinned()
