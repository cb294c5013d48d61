"""Gemma2 against transformers 4.45.2: config defaults, attention defaults, and generation past the
sliding window with every cache 4.45 offers for it.

4.45.2 computes Gemma2's windows exactly without a cache and, with its default HybridCache, for
batch 1 once the prompt fills the window. Elsewhere its caches are wrong, and these tests show it
before using its no-cache output as the oracle:
  - HybridCache, left padding: a decode step masks the sliding layers' slots with the padding of
    positions 0..W-1 (mask columns applied to ring slots), not of the positions the slots hold;
  - HybridCache, prompt shorter than the window: at position W-1 its shifting buffer drops position 0
    and keeps an empty (zero) slot that then travels through the window;
  - DynamicCache: decode steps ignore the window (the window mask is laid out by query row);
  - cache_implementation="static": crashes (its mask is sized for the prompt, not the cache).
formers' HybridCache, StaticCache and DynamicCache all compute the exact windows.
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.errors import ConfigError, GenerationError

from .cases.gemma2 import CASES
from .family_checks import build, load_pair, max_diff, padded_batch

NEW_TOKENS = 30  # 12-token prompts + 30: far past the 6-token window
NO_CACHE = {"use_cache": False, "cache_implementation": None}  # 4.45.2's exact path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build(CASES["gemma2-mqa-scalar"], tmp_path_factory.mktemp("gemma2"))


@pytest.fixture(scope="module")
def pair(folder):
    return load_pair(folder)


def _kwargs(rows: int, length: int = 12) -> dict:
    ids, mask = padded_batch(rows, length=length)
    return dict(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)


def _tokens_and_logits(model, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy tokens and every step's logits [steps, B, V] (tiny models soon repeat one token, so
    the logits are what shows whether two runs attended alike)."""
    model.__dict__.pop("_cache", None)  # the fixed-shape cache an earlier call kept: see this call's own
    model._modules.pop("_cache", None)  # (4.45's caches are modules)
    out = model.generate(**kwargs, output_logits=True, return_dict_in_generate=True)
    return out.sequences, torch.stack(out.logits)


def test_config_defaults_equal_transformers():
    ours, theirs = formers.Gemma2Config(), transformers.Gemma2Config()
    expected = {k: v for k, v in theirs.to_dict().items() if k in formers.Gemma2Config._fields}
    assert {k: v for k, v in ours.to_dict().items() if k in expected} == expected
    assert set(formers.Gemma2Config._fields) - set(theirs.to_dict()) == set()  # no field 4.45 lacks (hidden_act)
    assert ours.cache_implementation == "hybrid" and ours.query_pre_attn_scalar == 224
    assert [ours.layer_sliding_window(i) for i in range(4)] == [4096, None, 4096, None]


def test_eager_by_default_and_sdpa_when_asked(folder, pair):
    ours, ref = pair
    assert ours.config._attn_implementation == ref.config._attn_implementation == "eager"
    built = formers.Gemma2ForCausalLM(formers.Gemma2Config(**CASES["gemma2-gqa"].base))
    assert built.config._attn_implementation == "eager" and built.generation_config.cache_implementation == "hybrid"
    asked = load_pair(folder, attn_implementation="sdpa")
    assert [m.config._attn_implementation for m in asked] == ["sdpa", "sdpa"]
    assert ours.generation_config.cache_implementation == ref.generation_config.cache_implementation == "hybrid"


def test_sdpa_drops_the_score_softcap_as_4_45_does(tmp_path):
    """Where the softcap bites, 4.45.2's SDPA path (no softcap) differs from its eager path; formers'
    SDPA follows it (the family runner compares both kernels), and without a softcap the two agree."""
    ids, mask = padded_batch(length=16)
    for name, differ in (("gemma2-mqa-scalar", True), ("gemma2-no-softcap", False)):
        folder = build(CASES[name], tmp_path / name)
        eager = formers.AutoModelForCausalLM.from_pretrained(folder)
        sdpa = formers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
        with torch.no_grad():
            delta = max_diff(eager(ids, attention_mask=mask).logits, sdpa(ids, attention_mask=mask).logits, mask)
        assert (delta > 1e-3) if differ else (delta <= 1e-5), (name, delta)


def test_batch_of_one_past_the_window_equals_the_default_hybrid_cache(folder, pair):
    ours, ref = pair
    kwargs = _kwargs(1)
    expected, expected_logits = _tokens_and_logits(ref, **kwargs)
    assert type(ref._cache) is transformers.HybridCache
    tokens, logits = _tokens_and_logits(ours, **kwargs)
    assert torch.equal(tokens, expected) and max_diff(logits, expected_logits) <= 1e-5
    assert type(ours._cache) is formers.HybridCache and ours._cache.ring_size == 6
    assert torch.equal(expected, ref.generate(**kwargs, **NO_CACHE))  # here 4.45's cache is exact
    global_only = formers.AutoModelForCausalLM.from_pretrained(folder, sliding_window=4096)
    assert not torch.equal(global_only.generate(**kwargs), expected)  # the window really slid


@pytest.mark.parametrize("rows, length", [(3, 12), (1, 3)], ids=["left-padded", "prompt-shorter-than-window"])
def test_past_the_window_where_4_45_hybrid_cache_is_wrong(pair, rows, length):
    ours, ref = pair
    kwargs = _kwargs(rows, length)
    exact, exact_logits = _tokens_and_logits(ref, **kwargs, **NO_CACHE)
    _, hybrid_logits = _tokens_and_logits(ref, **kwargs)
    assert max_diff(hybrid_logits, exact_logits) > 1e-2  # 4.45.2's HybridCache (module docstring)
    tokens, logits = _tokens_and_logits(ours, **kwargs)
    assert type(ours._cache) is formers.HybridCache
    assert torch.equal(tokens, exact) and max_diff(logits, exact_logits) <= 1e-5


def test_left_padded_batch_within_the_window_equals_the_default_hybrid_cache(folder):
    """With a window longer than prompt + generation (12 + 30), 4.45.2's HybridCache reads the padding
    right: formers gives its tokens."""
    ours, ref = load_pair(folder, sliding_window=48)
    kwargs = _kwargs(3)
    expected, expected_logits = _tokens_and_logits(ref, **kwargs)
    assert type(ref._cache) is transformers.HybridCache
    tokens, logits = _tokens_and_logits(ours, **kwargs)
    assert torch.equal(tokens, expected) and max_diff(logits, expected_logits) <= 1e-5


@pytest.mark.parametrize("rows", [1, 3])
def test_every_cache_gives_the_exact_tokens(pair, rows):
    ours, ref = pair
    kwargs = _kwargs(rows)
    exact, exact_logits = _tokens_and_logits(ref, **kwargs, **NO_CACHE)
    with pytest.raises(RuntimeError):  # 4.45.2's static cache with Gemma2: mask sized for the prompt
        ref.generate(**kwargs, cache_implementation="static")
    _, theirs_dynamic = _tokens_and_logits(ref, **kwargs, past_key_values=transformers.DynamicCache(),
                                           cache_implementation=None)
    assert max_diff(theirs_dynamic, exact_logits) > 1e-2  # 4.45.2's decode steps ignore the window there
    dynamic = formers.DynamicCache()
    for extra in ({"cache_implementation": "static"}, {"cache_implementation": "hybrid"},
                  {"past_key_values": dynamic, "cache_implementation": None}):
        tokens, logits = _tokens_and_logits(ours, **kwargs, **extra)
        assert torch.equal(tokens, exact) and max_diff(logits, exact_logits) <= 1e-5, extra
    assert dynamic.get_seq_length() == 12 + NEW_TOKENS - 1
    with pytest.raises(ValueError, match="cache_implementation"):  # the config's "hybrid" and a cache
        ref.generate(**kwargs, past_key_values=transformers.DynamicCache())
    with pytest.raises(GenerationError, match="cache_implementation"):
        ours.generate(**kwargs, past_key_values=formers.DynamicCache())
    with pytest.raises(ConfigError, match="global layers"):  # its ring would cut the global layers' history
        ours.generate(**kwargs, cache_implementation="sliding_window")


def test_chunked_prefill_through_the_hybrid_cache_is_exact(pair):
    """Chunks of several tokens after a cached past (7 + 5 tokens, window 6), then decode steps: each
    step's logits equal 4.45.2's no-cache forward over the whole prefix."""
    ours, ref = pair
    ids, mask = padded_batch(3, length=16)
    cache = formers.HybridCache(ours.config, batch_size=3, max_cache_len=16)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        for start, end in ((0, 7), (7, 12), (12, 13), (13, 14), (14, 16)):
            step = ours(ids[:, start:end], attention_mask=mask[:, :end], position_ids=positions[:, start:end],
                        past_key_values=cache, cache_position=torch.arange(start, end))
            expected = ref(ids[:, :end], attention_mask=mask[:, :end], position_ids=positions[:, :end],
                           use_cache=False).logits[:, start:end]
            assert max_diff(step.logits, expected, mask[:, start:end]) <= 1e-5, (start, end)
    assert cache.get_seq_length() == 16
