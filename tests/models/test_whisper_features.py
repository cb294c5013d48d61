"""WhisperFeatureExtractor: features equal transformers 4.45.2's on real (espeak-ng) speech and on silence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from formers import AutoFeatureExtractor
from formers.audio_utils import mel_filter_bank
from formers.errors import AudioInputError
from formers.models.whisper import WhisperFeatureExtractor
from tests.models.whisper_fixtures import needs_audio_tools, speech_16k, speech_wav  # noqa: F401

TOL = 1e-5


@pytest.mark.parametrize("bins", [80, 128])
def test_mel_filter_bank_equals_oracle(bins):
    ours = mel_filter_bank(201, bins, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    theirs = transformers.audio_utils.mel_filter_bank(201, bins, 0.0, 8000.0, 16000, norm="slaney",
                                                      mel_scale="slaney")
    assert np.abs(ours - theirs).max() < 1e-12


def _assert_same(ours, theirs):
    assert set(ours.keys()) == set(theirs.keys())
    for key in theirs:
        a, b = np.asarray(ours[key]), np.asarray(theirs[key])
        assert a.shape == b.shape, key
        delta = np.abs(a.astype(np.float64) - b.astype(np.float64)).max()
        print(f"{key}: max |delta| = {delta:.3g}")
        assert delta <= TOL, key


@needs_audio_tools
@pytest.mark.parametrize("bins,options", [(80, {}), (128, {"do_normalize": True, "return_attention_mask": True}),
                                           (80, {"return_token_timestamps": True, "return_tensors": "np"})])
def test_features_on_speech_equal_oracle(speech_16k, bins, options):  # noqa: F811
    ours = WhisperFeatureExtractor(feature_size=bins)
    theirs = transformers.WhisperFeatureExtractor(feature_size=bins)
    batch = [speech_16k, speech_16k[: len(speech_16k) // 3]]
    for audio in (speech_16k, batch):
        _assert_same(ours(audio, sampling_rate=16000, **options), theirs(audio, sampling_rate=16000, **options))


@needs_audio_tools
def test_long_speech_is_truncated_to_30s_and_matches(speech_16k):  # noqa: F811
    long = np.concatenate([speech_16k] * (int(35 * 16000 / len(speech_16k)) + 1))
    assert len(long) > 30 * 16000
    ours = WhisperFeatureExtractor()(long, sampling_rate=16000, return_tensors="pt")
    theirs = transformers.WhisperFeatureExtractor()(long, sampling_rate=16000, return_tensors="pt")
    assert ours["input_features"].shape == (1, 80, 3000)
    assert torch.allclose(ours["input_features"], theirs["input_features"], atol=TOL, rtol=0)


def test_silence_matches_oracle():
    silence = np.zeros(16000 * 3, dtype=np.float32)
    _assert_same(WhisperFeatureExtractor()(silence, sampling_rate=16000),
                 transformers.WhisperFeatureExtractor()(silence, sampling_rate=16000))


def test_padding_longest_matches_oracle():
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(16000).astype(np.float32) * 0.1, rng.standard_normal(9000).astype(np.float32)]
    for kwargs in ({"padding": "longest"}, {"padding": "longest", "pad_to_multiple_of": 3200},
                   {"max_length": 12000}):
        _assert_same(WhisperFeatureExtractor()(clips, sampling_rate=16000, **kwargs),
                     transformers.WhisperFeatureExtractor()(clips, sampling_rate=16000, **kwargs))


def test_preprocessor_config_round_trip(tmp_path):
    WhisperFeatureExtractor(feature_size=128).save_pretrained(tmp_path)
    theirs = transformers.WhisperFeatureExtractor.from_pretrained(tmp_path)
    assert theirs.to_dict() == transformers.WhisperFeatureExtractor(feature_size=128).to_dict()
    transformers.WhisperFeatureExtractor(feature_size=128).save_pretrained(tmp_path / "t")
    ours = AutoFeatureExtractor.from_pretrained(tmp_path / "t")
    assert isinstance(ours, WhisperFeatureExtractor) and ours.feature_size == 128 and ours.n_samples == 480000


def test_bad_audio_raises_formers_errors():
    extractor = WhisperFeatureExtractor()
    with pytest.raises(AudioInputError, match="sampling_rate=8000.*16000"):
        extractor(np.zeros(8000, np.float32), sampling_rate=8000)
    with pytest.raises(AudioInputError, match="empty"):
        extractor(np.zeros(0, np.float32), sampling_rate=16000)
    with pytest.raises(AudioInputError, match="mono"):
        extractor(np.zeros((1, 2, 100), np.float32), sampling_rate=16000)
