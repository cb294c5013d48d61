"""Every cache class gives transformers 4.45.2's greedy tokens (batch 1 and a left-padded batch of 3),
including generation past the window / cache length where the class allows it.

Oracle per class: the same class in 4.45 where it runs on CPU (StaticCache, SinkCache); otherwise
4.45's DynamicCache, whose output these caches must reproduce: 4.45's SlidingWindowCache cannot be
built (its __init__ calls StaticCache.__init__ without a config), its OffloadedCache needs CUDA, and
its OffloadedStaticCache is built by generate() with an argument it rejects.
"""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from .conftest import padded_batch

NEW_TOKENS = 30  # prompts are 12 tokens: far past the 6-token window and the 16-token sink window


@pytest.fixture(scope="module")
def llama(llama_dir):
    return (formers.AutoModelForCausalLM.from_pretrained(llama_dir),
            transformers.AutoModelForCausalLM.from_pretrained(llama_dir))


@pytest.fixture(scope="module")
def mistral(mistral_dir):
    return (formers.AutoModelForCausalLM.from_pretrained(mistral_dir),
            transformers.AutoModelForCausalLM.from_pretrained(mistral_dir))


def _kwargs(rows: int) -> dict:
    ids, mask = padded_batch(rows)
    return dict(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)


@pytest.mark.parametrize("rows", [1, 3])
def test_static_cache_matches_oracle_static_cache(llama, rows):
    ours, ref = llama
    kwargs = _kwargs(rows)
    expected = ref.generate(**kwargs, cache_implementation="static")
    assert torch.equal(expected, ref.generate(**kwargs))  # the oracle agrees with itself
    assert torch.equal(ours.generate(**kwargs, cache_implementation="static"), expected)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("implementation", ["sliding_window", "hybrid", "static", "offloaded", "offloaded_static"])
def test_mistral_window_caches_match_oracle(mistral, rows, implementation):
    ours, ref = mistral
    kwargs = _kwargs(rows)
    assert torch.equal(ours.generate(**kwargs, cache_implementation=implementation), ref.generate(**kwargs))


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("implementation", ["offloaded", "offloaded_static"])
def test_offloaded_caches_match_oracle_dynamic_cache(llama, rows, implementation):
    ours, ref = llama
    kwargs = _kwargs(rows)
    assert torch.equal(ours.generate(**kwargs, cache_implementation=implementation), ref.generate(**kwargs))


@pytest.mark.parametrize("rows", [1, 3])
def test_sink_cache_matches_oracle_sink_cache(llama, rows):
    ours, ref = llama
    kwargs = _kwargs(rows)
    # 8 sinks cover the longest left padding (7): there 4.45's mask (by slot) and ours (by position) agree
    expected = ref.generate(**kwargs, past_key_values=transformers.SinkCache(window_length=16, num_sink_tokens=8))
    assert not torch.equal(expected, ref.generate(**kwargs))  # the window really slid
    cache = formers.SinkCache(window_length=16, num_sink_tokens=8)
    assert torch.equal(ours.generate(**kwargs, past_key_values=cache), expected)
    assert cache.get_seq_length() == 16


def test_sink_cache_partial_rotary_rerotates_only_rotated_dims():
    cache = formers.SinkCache(window_length=4, num_sink_tokens=1)
    angles = torch.arange(6, dtype=torch.float32)[:, None] * torch.tensor([1.0, 0.5, 1.0, 0.5])  # Drot = 4 of D = 8
    cos, sin = angles.cos()[None], angles.sin()[None]
    keys = torch.randn(1, 1, 6, 8)
    cache.update(keys[:, :, :4], keys[:, :, :4], 0, {"cos": cos[:, :4], "sin": sin[:, :4]})
    out, _ = cache.update(keys[:, :, 4:5], keys[:, :, 4:5], 0, {"cos": cos[:, 4:5], "sin": sin[:, 4:5]})
    kept = out[:, :, 1:3]  # positions 2 and 3 moved back by one
    assert torch.equal(kept[..., 4:], keys[:, :, 2:4, 4:])  # the pass-through half is untouched
    back = torch.tensor([-1.0, -0.5, -1.0, -0.5])
    first, second = keys[:, :, 2:4, :2], keys[:, :, 2:4, 2:4]
    rotated = keys[:, :, 2:4, :4] * back.cos() + torch.cat([-second, first], -1) * back.sin()
    assert torch.allclose(kept[..., :4], rotated, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 3])
def test_quantized_int8_cache_keeps_the_oracle_tokens(llama, rows):
    """int8 with a 4-token residual, so most of the history is quantized while decoding."""
    ours, ref = llama
    kwargs = _kwargs(rows)
    config = {"nbits": 8, "residual_length": 4, "q_group_size": 16}
    out = ours.generate(**kwargs, cache_implementation="quantized", cache_config=config)
    assert torch.equal(out, ref.generate(**kwargs))


def test_static_cache_is_kept_and_reset_between_calls(llama):
    ours, ref = llama
    kwargs = _kwargs(3)
    first = ours.generate(**kwargs, cache_implementation="static")
    cache = ours._cache
    shorter = dict(kwargs, max_new_tokens=10)
    assert torch.equal(ours.generate(**shorter, cache_implementation="static"), ref.generate(**shorter))
    assert ours._cache is cache  # same buffers: a compiled forward would not recompile
    assert torch.equal(ours.generate(**kwargs, cache_implementation="static"), first)
    longer = dict(kwargs, max_new_tokens=NEW_TOKENS + 5)
    ours.generate(**longer, cache_implementation="static")
    assert ours._cache is not cache and ours._cache.max_cache_len == 12 + NEW_TOKENS + 5
    single = _kwargs(1)
    ours.generate(**single, cache_implementation="static")
    assert ours._cache.batch_size == 1
    cache = ours._cache
    cache.reset()
    assert cache.get_seq_length() == 0 and not cache.key_cache[0].any()


def test_user_static_cache_continues_generation(llama):
    """llm_optims.md: pass the generated ids back with the same StaticCache to continue."""
    ours, ref = llama
    ids, _ = padded_batch(1)
    cache = formers.StaticCache(config=ours.config, max_batch_size=1, max_cache_len=12 + 2 * 8,
                                device=ours.device, dtype=ours.dtype)
    ref_cache = transformers.StaticCache(config=ref.config, max_batch_size=1, max_cache_len=12 + 2 * 8,
                                         device=ref.device, dtype=ref.dtype)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    out = ours.generate(ids, past_key_values=cache, **kwargs)
    expected = ref.generate(ids, past_key_values=ref_cache, **kwargs)
    assert torch.equal(out, expected)
    assert torch.equal(ours.generate(out, past_key_values=cache, **kwargs),
                       ref.generate(expected, past_key_values=ref_cache, **kwargs))


def test_too_small_user_static_cache_is_refused_up_front(llama):
    ours, _ = llama
    ids, _ = padded_batch(1)
    cache = formers.StaticCache(config=ours.config, batch_size=1, max_cache_len=16)
    with pytest.raises(formers.errors.CacheError, match="max_cache_len=16"):
        ours.generate(ids, past_key_values=cache, max_new_tokens=8, pad_token_id=0)


@pytest.mark.parametrize("cache_factory", [
    lambda model: formers.DynamicCache(),
    lambda model: formers.StaticCache(config=model.config, batch_size=1, max_cache_len=128),
    lambda model: formers.QuantizedCache(formers.QuantizedCacheConfig(nbits=8, residual_length=8, q_group_size=16)),
], ids=["dynamic", "static", "quantized-int8"])
def test_multi_turn_chat_with_reused_cache_equals_cold_run(llama, cache_factory):
    """Each turn appends user tokens to the previous output; reusing the cache must not change tokens."""
    ours, ref = llama
    turns = [torch.randint(3, 128, (1, n), generator=torch.Generator().manual_seed(n)) for n in (7, 5, 9)]
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cache, ids_warm, ids_cold = cache_factory(ours), None, None
    for user in turns:
        ids_warm = user if ids_warm is None else torch.cat([ids_warm, user], dim=1)
        ids_cold = user if ids_cold is None else torch.cat([ids_cold, user], dim=1)
        ids_warm = ours.generate(ids_warm, past_key_values=cache, **kwargs)
        ids_cold = ref.generate(ids_cold, **kwargs)
        assert torch.equal(ids_warm, ids_cold)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("settings", [
    {"backend": "quanto", "nbits": 4, "axis_key": 0, "axis_value": 0},
    {"backend": "quanto", "nbits": 2, "axis_key": 0, "axis_value": 0},
    {"backend": "HQQ", "nbits": 4, "axis_key": 1, "axis_value": 1},
    {"backend": "HQQ", "nbits": 8, "axis_key": 0, "axis_value": 1},
])
def test_package_quantized_caches_match_oracle(llama, rows, settings):
    """4.45's algorithm on the quanto / hqq packages: the residual of 4 tokens fills and the whole history is
    re-quantized several times within the 30 new tokens."""
    pytest.importorskip({"quanto": "quanto", "HQQ": "hqq"}[settings["backend"]])  # the `test` extra installs both
    ours, ref = llama
    kwargs = _kwargs(rows)
    cache_config = {**settings, "residual_length": 4, "q_group_size": 16, "compute_dtype": torch.float32}
    expected = ref.generate(**kwargs, cache_implementation="quantized", cache_config=dict(cache_config))
    assert not torch.equal(expected, ref.generate(**kwargs)) or settings["nbits"] == 8  # quantization shows
    assert torch.equal(ours.generate(**kwargs, cache_implementation="quantized", cache_config=dict(cache_config)),
                       expected)
