"""QuantizedCache: attention over the packed history equals attention over its dequantized copy; the
next-token logits stay close to the full-precision cache (max abs diff printed for nbits 2/4/8); the
history is quantized once, never re-quantized, and never dequantized as a whole while decoding; int4 holds 4096 tokens in <= 30% of a bf16 DynamicCache."""
from __future__ import annotations

import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode

import formers
from formers.cache import quantized as quantized_module
from formers.cache.quantize import dequantize, pack, quantize, unpack
from formers.cache.quantized_attention import quantized_attention

from ..conftest import STORIES, build_oracle_checkpoint, requires_shared


@pytest.mark.parametrize("nbits", [2, 4, 8])
def test_pack_round_trip_and_quantization_error(nbits):
    x = torch.randn(2, 3, 16, 8, generator=torch.Generator().manual_seed(nbits))
    codes, scale, low = quantize(x, nbits, dim=2)
    assert torch.equal(unpack(pack(codes, nbits, dim=2), nbits, dim=2), codes)
    restored = dequantize(pack(codes, nbits, dim=2), scale, low, nbits, 2, torch.float32)
    assert (restored - x).abs().max() <= scale.max() / 2 + 1e-6  # rounding error only


@pytest.mark.parametrize("nbits,group,length", [(2, 8, 1), (4, 4, 3), (8, 8, 2), (4, 2, 1)])
def test_blockwise_attention_equals_attention_over_dequantized_history(nbits, group, length):
    generator = torch.Generator().manual_seed(nbits + group)
    cache = formers.QuantizedCache(formers.QuantizedCacheConfig(nbits=nbits, residual_length=8, q_group_size=group))
    keys, values = torch.randn(2, 2, 30, 8, generator=generator), torch.randn(2, 2, 30, 8, generator=generator)
    cache.update(keys[:, :, :27 - length], values[:, :, :27 - length], 0)  # 16 quantized + some residual
    query = torch.randn(2, 4, length, 8, generator=generator)
    new_keys, new_values = keys[:, :, 27 - length:27], values[:, :, 27 - length:27]
    history_keys, history_values = cache.dequantized(0)
    all_keys = torch.cat([history_keys, new_keys], dim=2)
    all_values = torch.cat([history_values, new_values], dim=2)
    mask = torch.zeros(2, 1, length, 27)
    mask[1, :, :, :5] = torch.finfo(torch.float32).min  # a padded row
    mask[:, :, :, 27 - length:] = torch.full((length, length), torch.finfo(torch.float32).min).triu(1)
    expected = torch.nn.functional.scaled_dot_product_attention(query, all_keys, all_values, attn_mask=mask,
                                                                enable_gqa=True)
    out, _ = cache.attend(query, new_keys, new_values, 0, {}, mask, kernel=None)
    assert cache.get_seq_length() == 27
    assert torch.allclose(out, expected, atol=1e-5)


def test_history_is_quantized_once():
    cache = formers.QuantizedCache(formers.QuantizedCacheConfig(nbits=4, residual_length=4, q_group_size=8))
    keys, values = torch.randn(1, 2, 20, 8), torch.randn(1, 2, 20, 8)
    cache.update(keys[:, :, :6], values[:, :, :6], 0)
    first = cache.dequantized(0)[0][:, :, :4].clone()
    for position in range(6, 20):
        cache.update(keys[:, :, position:position + 1], values[:, :, position:position + 1], 0)
    assert torch.equal(cache.dequantized(0)[0][:, :, :4], first)  # 4.45 re-quantizes everything every R steps
    assert cache._layers[0].quantized_length == 20 and cache._layers[0].residual_keys.length == 0


@requires_shared(STORIES)
def test_next_token_logits_close_to_full_precision():
    model = formers.AutoModelForCausalLM.from_pretrained(STORIES)
    tokenizer = formers.AutoTokenizer.from_pretrained(STORIES)
    text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. " * 3
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :200]
    with torch.no_grad():
        expected = model(ids[:, :-1], past_key_values=formers.DynamicCache())
        expected = model(ids[:, -1:], past_key_values=expected.past_key_values).logits[0, -1]
        diffs = {}
        for nbits in (2, 4, 8):
            cache = formers.QuantizedCache(formers.QuantizedCacheConfig(nbits=nbits, residual_length=32))
            model(ids[:, :-1], past_key_values=cache)  # 192 of 199 positions quantized
            logits = model(ids[:, -1:], past_key_values=cache).logits[0, -1]
            diffs[nbits] = float((logits - expected).abs().max())
    print(f"next-token logit max abs diff vs full precision (logit range {float(expected.abs().max()):.1f}): "
          + ", ".join(f"int{n}: {d:.4f}" for n, d in diffs.items()))
    assert diffs[8] < diffs[4] < diffs[2]
    assert diffs[8] < 0.05 * float(expected.abs().max())


@pytest.mark.parametrize("backend,nbits,limit", [("native", 2, 0.20), ("native", 4, 0.30), ("native", 8, 0.55),
                                                  ("quanto", 4, 0.30), ("HQQ", 4, 0.35)])
def test_memory_at_4096_tokens_vs_bf16_dynamic_cache(backend, nbits, limit):
    """SmolLM-135M's per-layer shape (3 kv heads of 64), two layers, bf16; the quanto and HQQ rows are the
    bytes transformers 4.45's QuantizedCache holds with those packages."""
    if backend != "native":
        pytest.importorskip({"quanto": "quanto", "HQQ": "hqq"}[backend])  # the `test` extra installs both
    shape = (1, 3, 4096, 64)
    generator = torch.Generator().manual_seed(0)
    layers = [(torch.randn(shape, generator=generator).bfloat16(), torch.randn(shape, generator=generator).bfloat16())
              for _ in range(2)]
    settings = {"backend": backend, "nbits": nbits, **({"axis_key": 1, "axis_value": 1} if backend == "HQQ" else {})}
    dynamic = formers.DynamicCache()
    quantized = {"native": formers.QuantizedCache, "quanto": formers.QuantoQuantizedCache,
                 "HQQ": formers.HQQQuantizedCache}[backend](formers.QuantizedCacheConfig(**settings))
    for idx, (keys, values) in enumerate(layers):
        dynamic.update(keys, values, idx)
        quantized.update(keys, values, idx)
    ratio = quantized.get_memory_footprint() / dynamic.get_memory_footprint()
    print(f"{backend} int{nbits} cache at 4096 tokens: {quantized.get_memory_footprint()} bytes, "
          f"{ratio:.1%} of the bf16 DynamicCache ({dynamic.get_memory_footprint()} bytes)")
    assert quantized.get_seq_length() == 4096
    assert ratio <= limit


class _HistorySizedTensors(TorchDispatchMode):
    """Records every floating-point tensor an op produces that is shaped like a layer's history in full
    precision, [B, Hkv, S, D] with S >= `history` (what dequantizing it, alone or joined to the residual,
    yields). Codes cast one packed slice at a time, scores [B, Hkv, M, S] and outputs never match."""

    def __init__(self, batch: int, heads: int, history: int, dim: int) -> None:
        super().__init__()
        self.batch, self.heads, self.history, self.dim = batch, heads, history, dim
        self.seen: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.dim() == 4:
                b, h, s, d = tensor.shape
                if (b, h, d) == (self.batch, self.heads, self.dim) and s >= self.history:
                    self.seen.append((str(func), tuple(tensor.shape)))
        return out


def test_decode_never_dequantizes_the_whole_history(monkeypatch, tmp_path):
    """A spy on every decode step of a real model: no call of the dequantizing helpers, and no op output
    shaped like the dequantized history (which is what 4.45's QuantizedCache builds every step)."""
    model = formers.AutoModelForCausalLM.from_pretrained(build_oracle_checkpoint(tmp_path, "llama"))
    heads, dim = model.config.num_key_value_heads, model.config.hidden_size // model.config.num_attention_heads
    calls = []

    def spy(name, function):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return wrapped

    for name in ("dequantize", "unpack"):  # the names quantized.py calls them by
        monkeypatch.setattr(quantized_module, name, spy(name, getattr(quantized_module, name)))
    monkeypatch.setattr(formers.QuantizedCache, "dequantized", spy("dequantized", formers.QuantizedCache.dequantized))
    cache = formers.QuantizedCache(formers.QuantizedCacheConfig(nbits=4, residual_length=16, q_group_size=8))
    ids = torch.randint(3, 128, (2, 70), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids, past_key_values=cache).logits
        for _ in range(4):
            history = cache._layers[0].quantized_length
            assert history >= 64  # 4 blocks quantized, a few tokens in the residual
            spy_mode = _HistorySizedTensors(2, heads, history, dim)
            with spy_mode:
                logits = model(logits[:, -1:].argmax(-1), past_key_values=cache).logits
            assert spy_mode.seen == [] and calls == [], (spy_mode.seen, calls)
        assert cache.get_seq_length() == 74
        with spy_mode:  # the spies do see a dequantization when there is one
            cache[0]
        assert "dequantized" in calls and "dequantize" in calls and spy_mode.seen
