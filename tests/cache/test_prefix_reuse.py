"""Prefill a prompt prefix once and reuse it (beyond 4.45): fork()/copy()/deepcopy, generate() skipping the
cached part of the prompt, and caches saved to / loaded from a safetensors file."""
from __future__ import annotations

import copy

import pytest
import torch
import transformers

import formers
from formers.errors import CacheError, CheckpointError


@pytest.fixture(scope="module")
def models(llama_dir):
    return (formers.AutoModelForCausalLM.from_pretrained(llama_dir),
            transformers.AutoModelForCausalLM.from_pretrained(llama_dir))


PREFIX = torch.randint(3, 128, (1, 10), generator=torch.Generator().manual_seed(1))
SUFFIXES = [torch.randint(3, 128, (1, n), generator=torch.Generator().manual_seed(n)) for n in (3, 6)]
KWARGS = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)


def _prefilled(model, cache):
    with torch.no_grad():
        return model(PREFIX, past_key_values=cache, use_cache=True).past_key_values


def _fed_lengths(model):
    """Record the number of new positions each forward call receives."""
    lengths = []
    model.model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    return lengths


@pytest.mark.parametrize("duplicate", ["fork", "copy", "deepcopy"])
@pytest.mark.parametrize("cache_class", ["DynamicCache", "StaticCache", "QuantizedCache"])
def test_prefix_reused_for_several_prompts_equals_cold_runs(models, duplicate, cache_class):
    ours, ref = models
    make = {"DynamicCache": lambda: formers.DynamicCache(),
            "StaticCache": lambda: formers.StaticCache(ours.config, batch_size=1, max_cache_len=64),
            "QuantizedCache": lambda: formers.QuantizedCache({"nbits": 8, "residual_length": 4, "q_group_size": 16})}
    prefix_cache = _prefilled(ours, make[cache_class]())
    for suffix in SUFFIXES:
        prompt = torch.cat([PREFIX, suffix], dim=1)
        duplicates = {"fork": lambda c: c.fork(), "copy": lambda c: c.copy(), "deepcopy": copy.deepcopy}
        cache = duplicates[duplicate](prefix_cache)
        assert torch.equal(ours.generate(prompt, past_key_values=cache, **KWARGS), ref.generate(prompt, **KWARGS))
    assert prefix_cache.get_seq_length() == PREFIX.shape[1]  # the prefix itself is untouched


def test_generate_feeds_only_the_uncached_part_of_the_prompt(models):
    ours, _ = models
    lengths = _fed_lengths(ours)
    prefix_cache = _prefilled(ours, formers.DynamicCache())
    prompt = torch.cat([PREFIX, SUFFIXES[1]], dim=1)
    ours.generate(prompt, past_key_values=prefix_cache.fork(), **KWARGS)
    assert lengths == [PREFIX.shape[1], SUFFIXES[1].shape[1]] + [1] * (KWARGS["max_new_tokens"] - 1)


def test_fork_shares_buffers_until_a_side_writes():
    parent = formers.DynamicCache()
    keys = torch.randn(1, 2, 4, 8)
    parent.update(keys, keys, 0)
    child = parent.fork()
    assert child[0][0].data_ptr() == parent[0][0].data_ptr()  # nothing copied yet
    new = torch.randn(1, 2, 1, 8)
    child.update(new, new, 0)
    assert child[0][0].data_ptr() != parent[0][0].data_ptr()
    parent.update(-new, -new, 0)
    assert torch.equal(child[0][0][:, :, 4:], new) and torch.equal(parent[0][0][:, :, 4:], -new)
    assert torch.equal(child[0][0][:, :, :4], keys) and torch.equal(parent[0][0][:, :, :4], keys)


@pytest.mark.parametrize("cache_class", ["DynamicCache", "StaticCache"])
def test_cache_saved_to_safetensors_and_loaded_continues_generation(models, tmp_path, cache_class):
    ours, ref = models
    cache = formers.DynamicCache() if cache_class == "DynamicCache" else \
        formers.StaticCache(ours.config, batch_size=1, max_cache_len=40)
    formers.save_cache(_prefilled(ours, cache), tmp_path / "prefix.safetensors")
    loaded = formers.load_cache(tmp_path / "prefix.safetensors")
    assert loaded.get_seq_length() == PREFIX.shape[1]
    prompt = torch.cat([PREFIX, SUFFIXES[0]], dim=1)
    assert torch.equal(ours.generate(prompt, past_key_values=loaded, **KWARGS), ref.generate(prompt, **KWARGS))


def test_save_and_load_refuse_what_they_cannot_handle(tmp_path):
    with pytest.raises(CacheError, match="SinkCache cannot be saved"):
        formers.save_cache(formers.SinkCache(window_length=8, num_sink_tokens=2), tmp_path / "x.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        formers.load_cache(tmp_path / "bad.safetensors")
