"""HybridCache (on Gemma2's config), cache classes no formers model family uses yet (EncoderDecoderCache,
MambaCache), and the cache surface generally, against transformers 4.45.2's classes on the same tensors."""
from __future__ import annotations

import sys

import pytest
import torch
import transformers

import formers
from formers.errors import CacheError, ConfigError, GenerationError

CONFIG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, sliding_window=4, max_position_embeddings=64)


def _states(length: int, seed: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 2, length, 8, generator=generator),
            torch.randn(batch, 2, length, 8, generator=generator))


def _by_position(keys: torch.Tensor, positions: torch.Tensor) -> dict[int, torch.Tensor]:
    """Slot contents keyed by the absolute position each slot holds (empty slots left out)."""
    return {int(p): keys[:, :, slot] for slot, p in enumerate(positions.tolist()) if p >= 0}


GEMMA2 = dict(CONFIG, head_dim=8)  # even layers slide, odd layers are global


def test_hybrid_cache_reads_layer_windows_from_the_config():
    """4.45's HybridCache assumes Gemma2's alternation for any config; formers' asks the config."""
    assert formers.HybridCache(formers.MistralConfig(**CONFIG), batch_size=1).is_sliding.tolist() == [True] * 4
    assert formers.HybridCache(formers.Gemma2Config(**GEMMA2), batch_size=1).is_sliding.tolist() == [True, False] * 2


def test_hybrid_cache_updates_like_transformers():
    ours = formers.HybridCache(formers.Gemma2Config(**GEMMA2), batch_size=2, max_cache_len=10)
    ref = transformers.HybridCache(transformers.Gemma2Config(**GEMMA2), batch_size=2, max_cache_len=10)
    assert ours.is_sliding.tolist() == ref.is_sliding.tolist()
    assert [k.shape for k in ours.key_cache] == [k.shape for k in ref.key_cache]
    keys, values = _states(2, 0)  # a 2-token prefill leaves position 2 to be decoded before the ring is full
    for layer in range(4):
        window = ours.sliding_window if layer % 2 == 0 else None
        cache_kwargs = {"cache_position": torch.arange(2), "sliding_window": window}
        ours.update(keys, values, layer, cache_kwargs)
        ref.update(keys, values, layer, cache_kwargs)
        # what is stored agrees; a sliding layer's prefill also returns the ring as it was (ours, ring + new)
        assert torch.equal(ours.key_cache[layer], ref.key_cache[layer])
        assert torch.equal(ours.value_cache[layer], ref.value_cache[layer])
    assert ours.get_seq_length() == int(ref.get_seq_length()) == 2
    unwrapped = []  # positions where the two layouts were compared whole
    for position in range(2, 9):  # global layers: identical buffers; sliding layers: the same positions
        keys, values = _states(1, position)
        cache_kwargs = {"cache_position": torch.tensor([position])}
        a = ours.update(keys, values, 1, cache_kwargs)
        b = ref.update(keys, values, 1, cache_kwargs)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        window_positions = ours.key_positions(torch.tensor([position]), 0)
        a = ours.update(keys, values, 0, cache_kwargs)
        b = ref.update(keys, values, 0, {**cache_kwargs, "sliding_window": 4})
        held = _by_position(a[0], window_positions)
        assert sorted(held) == list(range(max(position - 3, 0), position + 1))  # the last W positions
        if position < ours.ring_size - 1:  # 4.45 shifts from position W-1 on; before that its layout is the ring
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            unwrapped.append(position)
        else:  # after that only the newest position sits where both layouts agree (4.45: the last slot)
            assert torch.equal(held[position], b[0][:, :, -1])
    assert unwrapped == [2]
    beams = torch.tensor([1, 0])
    expected = [t.index_select(0, beams) for t in ours.key_cache]
    ours.reorder_cache(beams)
    assert all(torch.equal(x, y) for x, y in zip(ours.key_cache, expected))
    ours.reset()
    ref.reset()
    assert ours.get_seq_length() == int(ref.get_seq_length()) == 0
    assert all(not t.any() for t in ours.key_cache + ours.value_cache)


def test_encoder_decoder_cache_matches_transformers():
    self_keys, self_values = _states(3, 1)
    cross_keys, cross_values = _states(5, 2)
    legacy = tuple((self_keys, self_values, cross_keys, cross_values) for _ in range(2))
    ours = formers.EncoderDecoderCache.from_legacy_cache(legacy)
    ref = transformers.EncoderDecoderCache.from_legacy_cache(legacy)
    assert ours.is_updated == ref.is_updated == {0: True, 1: True}
    assert ours.get_seq_length() == int(ref.get_seq_length()) == 3 and len(ours) == len(ref) == 2
    for a, b in zip(ours.to_legacy_cache(), ref.to_legacy_cache()):
        assert len(a) == len(b) == 4 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(ours[1], ref[1]))
    beams = torch.tensor([1, 0])
    ours.reorder_cache(beams)
    ref.reorder_cache(beams)
    ours.crop(2)
    ref.crop(2)
    assert all(torch.equal(x, y)
               for a, b in zip(ours.to_legacy_cache(), ref.to_legacy_cache()) for x, y in zip(a, b))
    ours.batch_repeat_interleave(2)
    ref.batch_repeat_interleave(2)
    ours.batch_select_indices(torch.tensor([0, 3]))
    ref.batch_select_indices(torch.tensor([0, 3]))
    assert all(torch.equal(x, y) for x, y in zip(ours[0], ref[0]))
    rebuilt = formers.EncoderDecoderCache.from_batch_splits(ours.batch_split(2, 1))
    assert all(torch.equal(x, y) for x, y in zip(rebuilt[0], ours[0]))
    static = formers.EncoderDecoderCache(formers.StaticCache(formers.LlamaConfig(**CONFIG), 2, 8),
                                         formers.DynamicCache())
    with pytest.raises(CacheError, match="DynamicCache for both"):
        static.crop(1)
    ours.reset()
    assert ours.get_seq_length() == 0 and ours.is_updated == {0: False, 1: False}


def test_mamba_cache_matches_transformers():
    config = transformers.MambaConfig(hidden_size=8, intermediate_size=6, state_size=4, conv_kernel=3,
                                      num_hidden_layers=2)
    ours = formers.MambaCache(config, batch_size=2, dtype=torch.float32)
    ref = transformers.MambaCache(config, batch_size=2, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    for position in range(5):
        conv = torch.randn(2, 6, 3 if position == 0 else 1, generator=generator)
        cache_position = torch.arange(3) if position == 0 else torch.tensor([position + 2])
        assert torch.equal(ours.update_conv_state(1, conv, cache_position),
                           ref.update_conv_state(1, conv, cache_position))
        ssm = torch.randn(2, 6, 4, generator=generator)
        assert torch.equal(ours.update_ssm_state(0, ssm), ref.update_ssm_state(0, ssm))
    assert torch.equal(ours.conv_states, ref.conv_states) and torch.equal(ours.ssm_states, ref.ssm_states)
    ours.reset()
    assert not ours.conv_states.any() and not ours.ssm_states.any()


def test_dynamic_cache_batch_operations_match_transformers():
    legacy = tuple(_states(5, seed, batch=4) for seed in range(2))
    ours, ref = formers.DynamicCache.from_legacy_cache(legacy), transformers.DynamicCache.from_legacy_cache(legacy)
    splits_ours, splits_ref = ours.batch_split(4, 2), ref.batch_split(4, 2)
    for a, b in zip(splits_ours, splits_ref):
        assert all(torch.equal(x, y) for x, y in zip(a.to_legacy_cache()[1], b.to_legacy_cache()[1]))
    merged = formers.DynamicCache.from_batch_splits(splits_ours)
    assert all(torch.equal(x, y) for x, y in zip(merged[1], ours[1]))
    ours.batch_repeat_interleave(2)
    ref.batch_repeat_interleave(2)
    ours.reorder_cache(torch.arange(8).flip(0))
    ref.reorder_cache(torch.arange(8).flip(0))
    ours.crop(-2)
    ref.crop(-2)
    assert ours.get_seq_length() == ref.get_seq_length() == 3
    for a, b in zip(ours.to_legacy_cache(), ref.to_legacy_cache()):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    key, value = _states(1, 9, batch=8)
    assert all(torch.equal(x, y) for x, y in zip(ours.update(key, value, 0), ref.update(key, value, 0)))


def test_static_cache_update_and_length_match_transformers():
    config = dict(CONFIG, sliding_window=None)
    ours = formers.StaticCache(formers.LlamaConfig(**config), batch_size=2, max_cache_len=8)
    ref = transformers.StaticCache(transformers.LlamaConfig(**config), batch_size=2, max_cache_len=8)
    for start, length in ((0, 3), (3, 1), (4, 2)):
        keys, values = _states(length, start)
        for layer in range(4):
            cache_kwargs = {"cache_position": torch.arange(start, start + length)}
            a, b = ours.update(keys, values, layer, cache_kwargs), ref.update(keys, values, layer, cache_kwargs)
            assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert ours.get_seq_length() == int(ref.get_seq_length()) == start + length
    assert ours.get_max_length() == ref.get_max_length() == 8
    ours.reset()
    assert ours.get_seq_length() == 0


def test_cache_configs_round_trip_and_validate(tmp_path):
    ours = formers.QuantizedCacheConfig.from_dict({"nbits": 2, "residual_length": 32})
    ref = transformers.QuantizedCacheConfig.from_dict({"nbits": 2, "residual_length": 32})
    assert {k: v for k, v in ours.to_dict().items() if k != "backend"} == \
        {k: v for k, v in ref.to_dict().items() if k != "backend"}
    assert ours.backend == "native" and ref.backend == "quanto"  # our default needs no extra package
    assert ours.update(q_group_size=16, unknown=1) == {"unknown": 1} and ours.q_group_size == 16
    ours.to_json_file(tmp_path / "cache_config.json")
    assert '"nbits": 2' in (tmp_path / "cache_config.json").read_text()
    with pytest.raises(ConfigError, match="cache_config.nbits"):
        formers.QuantizedCacheConfig(nbits=5).validate()
    with pytest.raises(ConfigError, match="unknown keys"):
        formers.QuantizedCacheConfig.from_dict({"bits": 4})
    with pytest.raises(ConfigError, match="max_cache_len"):
        formers.StaticCacheConfig(batch_size=1, max_cache_len=0).validate()


def test_missing_quantization_packages_are_named(monkeypatch):
    packages = ("quanto", "optimum", "hqq")  # None in sys.modules: Python's mark of a module that is not there
    for name in [*packages, *(name for name in sys.modules if name.split(".")[0] in packages)]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(CacheError, match="`quanto` package"):
        formers.QuantoQuantizedCache(formers.QuantizedCacheConfig(backend="quanto"))
    with pytest.raises(CacheError, match="`hqq` package"):
        formers.HQQQuantizedCache(formers.QuantizedCacheConfig(backend="HQQ"))


def test_package_quantized_caches_check_their_settings_and_report_bytes():
    with pytest.raises(ConfigError, match="cache_config.nbits: expected 2 or 4 for the quanto backend"):
        formers.QuantoQuantizedCache({"backend": "quanto", "nbits": 8})
    with pytest.raises(ConfigError, match="cache_config.axis_key: expected 0 or 1 for the HQQ backend"):
        formers.HQQQuantizedCache({"backend": "HQQ", "axis_key": -1})
    torch.manual_seed(0)
    for cache in (formers.QuantoQuantizedCache({"nbits": 4, "q_group_size": 16, "residual_length": 2}),
                  formers.HQQQuantizedCache({"nbits": 4, "q_group_size": 16, "residual_length": 2, "axis_key": 1,
                                             "axis_value": 1, "compute_dtype": torch.float32})):
        prompt = torch.randn(2, 2, 32, 16), torch.randn(2, 2, 32, 16)
        keys, _ = cache.update(*prompt, 0)
        assert torch.equal(keys, prompt[0]) and cache.get_seq_length() == 32
        for _ in range(3):
            keys, values = cache.update(torch.randn(2, 2, 1, 16), torch.randn(2, 2, 1, 16), 0)
        assert keys.shape == (2, 2, 35, 16) and cache.get_seq_length() == 35 and len(cache) == 1
        assert (keys[:, :, :32] - prompt[0]).abs().max() < 0.5  # 4-bit codes of N(0, 1) data
        assert [t.shape for t in cache[0]] == [keys.shape, values.shape]
        full_precision = 2 * keys.numel() * 4
        assert 0 < cache.get_memory_footprint() < full_precision / 2
        for refused in (lambda: cache.reorder_cache(torch.tensor([1, 0])), lambda: cache.crop(4)):
            with pytest.raises(CacheError, match="does not support"):  # 4.45 would touch only the residual
                refused()
        cache.reset()
        assert cache.get_seq_length() == 0 and len(cache) == 0


def test_bad_cache_arguments_raise_clear_errors(llama_dir):
    model = formers.AutoModelForCausalLM.from_pretrained(llama_dir)
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ConfigError, match="sliding_window"):
        model.generate(ids, max_new_tokens=2, cache_implementation="sliding_window")
    with pytest.raises(GenerationError, match="not both"):
        model.generate(ids, max_new_tokens=2, cache_implementation="static", past_key_values=formers.DynamicCache())
    with pytest.raises(GenerationError, match="Mamba"):
        model.generate(ids, max_new_tokens=2, cache_implementation="mamba")
    with pytest.raises(CacheError, match="num_sink_tokens"):
        formers.SinkCache(window_length=4, num_sink_tokens=4)
    with pytest.raises(CacheError, match="does not support crop"):
        formers.QuantizedCache().crop(1)
    with pytest.raises(CacheError, match="layer 1 written before layer 0"):
        formers.SinkCache(window_length=4, num_sink_tokens=1).update(*_states(1, 0), 1)


def test_top_level_and_cache_utils_names():
    import formers.cache_utils as cache_utils

    for name in ("Cache", "DynamicCache", "StaticCache", "SlidingWindowCache", "SinkCache", "QuantizedCache",
                 "QuantoQuantizedCache", "HQQQuantizedCache", "OffloadedCache", "OffloadedStaticCache", "HybridCache",
                 "EncoderDecoderCache", "MambaCache", "CacheConfig", "QuantizedCacheConfig"):
        assert getattr(formers, name) is getattr(cache_utils, name)
        assert name in dir(transformers)  # the same public names as the oracle
    assert formers.StaticCacheConfig is cache_utils.StaticCacheConfig is not None
