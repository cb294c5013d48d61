"""Row operations and rollback on the Cache protocol: MambaCache (a state cache) and the base-class defaults
that caches of keys/values inherit (rewind = crop, snapshot/restore = full copies)."""
from types import SimpleNamespace

import pytest
import torch

import formers
from formers.cache import Cache, DynamicCache, MambaCache
from formers.errors import CacheError

CONFIG = SimpleNamespace(intermediate_size=6, state_size=5, conv_kernel=3, num_hidden_layers=2)


def _filled(batch: int = 3, seed: int = 0) -> MambaCache:
    cache = MambaCache(CONFIG, batch_size=batch, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    cache.conv_states.copy_(torch.randn(cache.conv_states.shape, generator=generator))
    cache.ssm_states.copy_(torch.randn(cache.ssm_states.shape, generator=generator))
    cache.advance(4)
    return cache


def test_mamba_cache_is_a_cache_with_a_position_counter():
    cache = _filled()
    assert isinstance(cache, Cache) and cache.recurrent and not DynamicCache.recurrent
    assert cache.get_seq_length() == 4 and cache.seen_tokens == 4
    cache.reset()
    assert cache.get_seq_length() == 0 and not cache.conv_states.any() and not cache.ssm_states.any()
    with pytest.raises(CacheError, match="batch_size"):
        MambaCache(CONFIG)


def test_reorder_select_and_repeat_move_whole_rows():
    cache = _filled()
    conv, ssm = cache.conv_states.clone(), cache.ssm_states.clone()
    address = cache.ssm_states.data_ptr()
    order = torch.tensor([2, 2, 0])
    cache.reorder_cache(order)
    assert torch.equal(cache.conv_states, conv[:, order]) and torch.equal(cache.ssm_states, ssm[:, order])
    assert cache.ssm_states.data_ptr() == address  # in place: a compiled step keeps its buffers
    cache.batch_select_indices(torch.tensor([1]))
    assert cache.batch_size == 1 and torch.equal(cache.ssm_states, ssm[:, [2]])
    cache.batch_repeat_interleave(3)
    assert cache.batch_size == 3 and torch.equal(cache.conv_states, conv[:, [2, 2, 2]])
    assert cache.get_seq_length() == 4


def test_snapshot_restore_brings_back_states_and_length():
    cache = _filled()
    snap = cache.snapshot()
    before = cache.ssm_states.clone(), cache.conv_states.clone()
    for _ in range(2):  # a snapshot can be restored more than once
        cache.ssm_states.add_(1.0)
        cache.conv_states.mul_(2.0)
        cache.advance(3)
        cache.restore(snap)
        assert torch.equal(cache.ssm_states, before[0]) and torch.equal(cache.conv_states, before[1])
        assert cache.get_seq_length() == 4
    with pytest.raises(CacheError, match="MambaSnapshot"):
        cache.restore(4)


def test_checkpoint_rewind_lands_on_the_newest_usable_checkpoint():
    cache = _filled()
    states = {}
    for _ in range(3):  # checkpoints at 4, 5, 6
        cache.checkpoint()
        states[cache.get_seq_length()] = cache.ssm_states.clone()
        cache.ssm_states.add_(1.0)
        cache.advance(1)
    assert cache.rewind(5) == 5 and torch.equal(cache.ssm_states, states[5])
    cache.ssm_states.add_(2.0)
    cache.advance(2)
    assert cache.rewind(7) == 7                      # nothing to forget
    for _ in range(2):
        cache.checkpoint()
        cache.ssm_states.add_(1.0)
        cache.advance(1)
    assert cache.rewind(8) == 8 and torch.allclose(cache.ssm_states, states[4] + 4)
    with pytest.raises(CacheError, match="no checkpoint"):  # a rewind drops the checkpoints
        cache.rewind(5)
    with pytest.raises(CacheError, match="cannot forget"):
        cache.crop(2)
    cache.crop(8)  # no-op crops are fine


def test_copy_is_independent():
    cache = _filled()
    child = cache.copy()
    child.ssm_states.zero_()
    child.advance(1)
    assert cache.ssm_states.any() and cache.get_seq_length() == 4 and child.get_seq_length() == 5


def test_base_defaults_for_key_value_caches():
    cache = DynamicCache()
    keys = torch.randn(2, 1, 5, 4)
    cache.update(keys, keys + 1, 0)
    cache.checkpoint()                               # nothing to remember: crop goes anywhere
    assert cache.rewind(3) == 3 and cache.get_seq_length() == 3
    snap = cache.snapshot()                          # default: a full copy
    cache.update(torch.zeros(2, 1, 2, 4), torch.zeros(2, 1, 2, 4), 0)
    cache.restore(snap)
    assert cache.get_seq_length() == 3 and torch.equal(cache[0][0], keys[:, :, :3])
    with pytest.raises(CacheError, match="snapshot"):
        cache.restore(3)
    static = formers.StaticCache(formers.LlamaConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                                                    intermediate_size=16, vocab_size=16), 2, 8)
    with pytest.raises(CacheError, match="batch_select_indices"):
        static.batch_select_indices(torch.tensor([0]))
