"""Whisper token timestamps (cross-attention alignment + DTW), no-speech skipping, conditioning on earlier
segments and long-form prompts: equal to transformers 4.45.2 on a tiny random checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from formers import WhisperForConditionalGeneration
from formers.errors import GenerationError
from tests.models.whisper_fixtures import write_tiny_whisper


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = write_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper_ts"))
    return (transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval(),
            WhisperForConditionalGeneration.from_pretrained(folder).eval())


@pytest.fixture(scope="module")
def long_features():
    torch.manual_seed(3)
    mask = torch.ones(2, 7000, dtype=torch.long)
    mask[1, 5000:] = 0  # the second row is 50 s long
    return torch.randn(2, 80, 7000), mask


def _same_segments(expected, got) -> None:
    assert torch.equal(got["sequences"], expected["sequences"])
    assert [len(row) for row in got["segments"]] == [len(row) for row in expected["segments"]]
    for row_a, row_b in zip(expected["segments"], got["segments"]):
        for a, b in zip(row_a, row_b):
            assert torch.equal(a["tokens"], b["tokens"])
            assert float(a["start"]) == pytest.approx(b["start"], abs=1e-5)
            assert float(a["end"]) == pytest.approx(b["end"], abs=1e-5)
            assert ("token_timestamps" in a) == ("token_timestamps" in b)
            if "token_timestamps" in a:
                assert torch.equal(a["token_timestamps"], b["token_timestamps"])


@pytest.mark.parametrize("kwargs", [{}, {"return_timestamps": True}, {"num_frames": 2000},
                                    {"num_frames": [3000, 1200]}, {"language": "fr", "max_new_tokens": 8}])
def test_short_form_token_timestamps_equal_oracle(models, kwargs):
    theirs, ours = models
    torch.manual_seed(1)
    features = torch.randn(2, 80, 3000)
    expected = theirs.generate(features, return_token_timestamps=True, **kwargs)
    got = ours.generate(features, return_token_timestamps=True, **kwargs)
    assert torch.equal(got["sequences"], expected["sequences"])
    assert got["token_timestamps"].shape == expected["token_timestamps"].shape
    assert torch.equal(got["token_timestamps"], expected["token_timestamps"])
    assert float(got["token_timestamps"].max()) > 0.5  # the path really moves through the audio


def test_dtw_and_median_filter_equal_oracle():
    from transformers.models.whisper.generation_whisper import (
        _dynamic_time_warping,
        _median_filter,
    )

    from formers.models.whisper.token_timestamps import dtw_path, median_filter
    generator = torch.Generator().manual_seed(0)
    for tokens, frames in ((1, 5), (7, 40), (15, 90)):
        matrix = torch.randn(tokens, frames, generator=generator, dtype=torch.float64)
        matrix[:, 3] = matrix[:, 2]  # ties
        expected = _dynamic_time_warping(matrix.numpy())
        got = dtw_path(matrix.numpy())
        assert all(np.array_equal(a, b) for a, b in zip(expected, got))
        values = torch.randn(2, 3, tokens, frames, generator=generator)
        assert torch.equal(median_filter(values, 7), _median_filter(values, 7))


LONG_CASES = [{"return_token_timestamps": True},
              {"condition_on_prev_tokens": True, "max_new_tokens": 10},
              {"condition_on_prev_tokens": True, "max_new_tokens": 10, "prompt_ids": [2, 300, 301],
               "prompt_condition_type": "all-segments"},
              {"prompt_ids": [2, 300, 301]},
              {"temperature": (0.0, 0.4), "logprob_threshold": -1.0, "no_speech_threshold": 0.00025,
               "return_token_timestamps": True}]


@pytest.mark.parametrize("kwargs", LONG_CASES, ids=["token-timestamps", "condition", "condition-all-segments",
                                                     "prompt-ids", "no-speech"])
def test_long_form_options_equal_oracle(models, long_features, kwargs):
    theirs, ours = models
    features, mask = long_features
    kwargs = {k: torch.tensor(v) if k == "prompt_ids" else v for k, v in kwargs.items()}
    results = []
    for model in (theirs, ours):
        torch.manual_seed(0)
        results.append(model.generate(features, attention_mask=mask, return_timestamps=True, return_segments=True,
                                      **kwargs))
    _same_segments(*results)
    plain = ours.generate(features, attention_mask=mask, return_timestamps=True,
                          max_new_tokens=kwargs.get("max_new_tokens"))
    if "return_token_timestamps" not in kwargs or "no_speech_threshold" in kwargs:  # the option changed the text
        assert not torch.equal(results[1]["sequences"], plain)
    if "no_speech_threshold" in kwargs:  # some windows skipped, not all
        assert results[1]["sequences"].numel() > 0


def test_bad_option_combinations_raise(models):
    _, ours = models
    features = torch.zeros(1, 80, 3000)
    with pytest.raises(GenerationError, match="needs logprob_threshold"):
        ours.generate(features, no_speech_threshold=0.6)
    with pytest.raises(GenerationError, match="condition_on_prev_tokens=True"):
        ours.generate(features, prompt_condition_type="all-segments")
    with pytest.raises(GenerationError, match="prompt_condition_type='last'"):
        ours.generate(features, prompt_condition_type="last")
    with pytest.raises(GenerationError, match="num_beams>1"):
        ours.generate(features, return_token_timestamps=True, num_beams=2)
