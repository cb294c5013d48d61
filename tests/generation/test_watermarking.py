"""WatermarkLogitsProcessor and WatermarkDetector against transformers 4.45.2."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from transformers.generation.logits_process import WatermarkLogitsProcessor as HFWatermark

import formers
from formers.errors import GenerationError
from formers.generation import WatermarkDetector, WatermarkLogitsProcessor

V = 97


@pytest.mark.parametrize("kwargs", [dict(), dict(seeding_scheme="selfhash"), dict(context_width=3, bias=1.5),
                                    dict(seeding_scheme="selfhash", context_width=2, greenlist_ratio=0.5)])
def test_processor_matches(kwargs):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (4, 7), generator=generator)
    scores = torch.randn(4, V, generator=generator)
    ours = WatermarkLogitsProcessor(vocab_size=V, device="cpu", **kwargs)
    theirs = HFWatermark(vocab_size=V, device="cpu", **kwargs)
    for step in range(3):  # the green-list cache must not change later steps
        assert torch.allclose(ours(ids, scores), theirs(ids, scores))
        ids = torch.cat([ids, torch.randint(0, V, (4, 1), generator=generator)], dim=1)
    short = ids[:, :1]
    if ours.context_width > 1:
        assert torch.equal(ours(short, scores), scores)  # too short to seed: unchanged, as in 4.45


def test_processor_validation():
    for bad in (dict(seeding_scheme="nope"), dict(greenlist_ratio=1.0)):
        with pytest.raises(ValueError):
            HFWatermark(vocab_size=V, device="cpu", **bad)
        with pytest.raises(GenerationError):
            WatermarkLogitsProcessor(vocab_size=V, device="cpu", **bad)


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_detector_outputs_match(llama_pair, scheme):
    ours, ref = llama_pair
    config = dict(seeding_scheme=scheme, bias=4.0)
    prompt = torch.randint(3, 128, (3, 6), generator=torch.Generator().manual_seed(1))
    marked = ours.generate(prompt, max_new_tokens=24, pad_token_id=0, eos_token_id=None,
                           watermarking_config=formers.WatermarkingConfig(**config))
    plain = ours.generate(prompt, max_new_tokens=24, pad_token_id=0, eos_token_id=None)
    mine = WatermarkDetector(ours.config, "cpu", formers.WatermarkingConfig(**config))
    theirs = transformers.WatermarkDetector(ref.config, "cpu", transformers.WatermarkingConfig(**config))
    for ids in (marked[:, 6:], plain[:, 6:]):
        a, b = mine(ids, return_dict=True), theirs(ids, return_dict=True)
        for field in ("num_tokens_scored", "num_green_tokens", "green_fraction", "z_score", "p_value",
                      "prediction", "confidence"):
            assert np.allclose(getattr(a, field), getattr(b, field)), field
        assert np.array_equal(mine(ids, z_threshold=2.0), theirs(ids, z_threshold=2.0))
    assert mine(marked[:, 6:]).all() and not mine(plain[:, 6:]).any()


def test_detector_ignores_repeats_when_asked(llama_pair):
    ours, _ = llama_pair
    ids = torch.tensor([[5, 6, 5, 6, 5, 6, 7]])
    config = formers.WatermarkingConfig()
    assert WatermarkDetector(ours.config, "cpu", config)(ids, return_dict=True).num_tokens_scored[0] == 6
    dedup = WatermarkDetector(ours.config, "cpu", config, ignore_repeated_ngrams=True)
    assert dedup(ids, return_dict=True).num_tokens_scored[0] == 3  # (5,6), (6,5), (6,7)
