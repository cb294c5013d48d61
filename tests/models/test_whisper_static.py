"""Whisper's compiled static-cache recipe from 4.45's docs: `generation_config.cache_implementation = "static"`
(fixed-shape self- and cross-attention buffers) gives the same ids as the default cache, and so does
`model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)` on top (slow)."""
from __future__ import annotations

import copy

import pytest
import torch

from formers import WhisperForConditionalGeneration
from formers.cache.encoder_decoder import EncoderDecoderCache
from formers.cache.static import StaticCache
from tests.models.whisper_fixtures import write_tiny_whisper

CASES = [{"max_new_tokens": 20}, {"return_timestamps": True}, {"language": "fr", "max_new_tokens": 12}]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = write_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper_static"))
    return WhisperForConditionalGeneration.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def features():
    torch.manual_seed(1)
    return torch.randn(2, 80, 3000)


def _static(model):
    static = copy.copy(model)
    static.generation_config = copy.deepcopy(model.generation_config)
    static.generation_config.cache_implementation = "static"
    return static


def test_static_cache_ids_equal_default_cache(model, features):
    static = _static(model)
    for kwargs in CASES:
        assert torch.equal(static.generate(features, **kwargs), model.generate(features, **kwargs))
    kept = static.__dict__["_whisper_static_cache"][1]
    assert isinstance(kept, EncoderDecoderCache) and isinstance(kept.self_attention_cache, StaticCache)
    assert isinstance(kept.cross_attention_cache, StaticCache)
    buffer = kept.self_attention_cache.key_cache[0]
    static.generate(features, max_new_tokens=5)  # a second call reuses the same buffers (compiled graphs stay valid)
    assert static.__dict__["_whisper_static_cache"][1].self_attention_cache.key_cache[0] is buffer


def test_static_cache_long_form_equals_default_cache(model):
    torch.manual_seed(3)
    features = torch.randn(1, 80, 4500)
    expected = model.generate(features, return_timestamps=True)
    assert torch.equal(_static(model).generate(features, return_timestamps=True), expected)


@pytest.mark.slow
def test_compiled_static_recipe_equals_eager(model, features):
    compiled = _static(model)
    compiled.forward = torch.compile(compiled.forward, mode="reduce-overhead", fullgraph=True)
    for kwargs in CASES[:2]:
        expected = model.generate(features, **kwargs)
        assert torch.equal(compiled.generate(features, **kwargs), expected)
        assert torch.equal(compiled.generate(features, **kwargs), expected)  # the compiled graphs again
