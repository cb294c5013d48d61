"""Whisper model + short-form generate: parity with transformers 4.45.2 on a tiny random checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from formers import (
    AutoModelForSpeechSeq2Seq,
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperModel,
)
from formers.errors import ConfigError, GenerationError
from formers.models.whisper import WhisperFeatureExtractor, WhisperTokenizerFast
from tests.models.whisper_fixtures import (  # noqa: F401
    needs_audio_tools,
    speech_16k,
    speech_wav,
    write_tiny_whisper,
)

TOL = 1e-5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"))


@pytest.fixture(scope="module")
def models(folder):
    return (transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval(),
            WhisperForConditionalGeneration.from_pretrained(folder).eval())


@pytest.fixture(scope="module")
def features():
    torch.manual_seed(1)
    return torch.randn(2, 80, 3000)


def test_config_defaults_equal_oracle():
    theirs = transformers.WhisperConfig().to_dict()
    ours = WhisperConfig().to_dict()
    for key in WhisperConfig._fields:
        if key in theirs:
            assert ours[key] == theirs[key], key


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_forward_equals_oracle(folder, features, attn):
    theirs = transformers.WhisperForConditionalGeneration.from_pretrained(folder, attn_implementation=attn).eval()
    ours = WhisperForConditionalGeneration.from_pretrained(folder, attn_implementation=attn).eval()
    decoder_ids = torch.tensor([[272, 273, 374, 378, 300, 301], [272, 290, 373, 9, 8, 7]])
    with torch.no_grad():
        a = theirs(input_features=features, decoder_input_ids=decoder_ids, output_hidden_states=True)
        b = ours(input_features=features, decoder_input_ids=decoder_ids, output_hidden_states=True)
        base = WhisperModel.from_pretrained(folder).eval()(input_features=features, decoder_input_ids=decoder_ids)
    deltas = {"encoder": (a.encoder_last_hidden_state - b.encoder_last_hidden_state).abs().max().item(),
              "logits": (a.logits - b.logits).abs().max().item(),
              "base": (a.decoder_hidden_states[-1] - base.last_hidden_state).abs().max().item()}
    print(attn, deltas)
    assert max(deltas.values()) <= TOL
    for x, y in zip(a.encoder_hidden_states, b.encoder_hidden_states):
        assert (x - y).abs().max() <= TOL


def test_incremental_decoding_matches_full_forward(models, features):
    _, ours = models
    ids = torch.tensor([[272, 273, 374, 378, 300, 301, 302]])
    with torch.no_grad():
        full = ours(input_features=features[:1], decoder_input_ids=ids).logits
        first = ours(input_features=features[:1], decoder_input_ids=ids[:, :4], use_cache=True)
        step = ours(encoder_outputs=(first.encoder_last_hidden_state,), decoder_input_ids=ids[:, 4:],
                    past_key_values=first.past_key_values, use_cache=True).logits
    assert (full[:, 4:] - step).abs().max() <= TOL


GENERATE_CASES = [{}, {"language": "en"}, {"language": "French", "task": "translate"}, {"task": "transcribe"},
                  {"return_timestamps": True}, {"return_timestamps": True, "language": "de"},
                  {"num_beams": 3}, {"num_beams": 2, "return_timestamps": True}, {"max_new_tokens": 5},
                  {"language": ["en", "fr"]}]


@pytest.mark.parametrize("kwargs", GENERATE_CASES, ids=[str(c) for c in GENERATE_CASES])
def test_generate_ids_equal_oracle(models, features, kwargs):
    theirs, ours = models
    expected, got = theirs.generate(features, **kwargs), ours.generate(features, **kwargs)
    assert got.shape == expected.shape and torch.equal(got, expected)


def test_prompt_ids_and_timestamps_decode_equal_oracle(folder, models, features):
    theirs, ours = models
    tok = WhisperTokenizerFast.from_pretrained(folder)
    prompt = torch.tensor(tok.get_prompt_ids("the sea", return_tensors="np"))
    assert torch.equal(ours.generate(features, prompt_ids=prompt), theirs.generate(features, prompt_ids=prompt))
    oracle_tok = transformers.WhisperTokenizerFast.from_pretrained(folder)
    expected = theirs.generate(features, return_timestamps=True)
    got = ours.generate(features, return_timestamps=True)
    assert any(t >= tok.timestamp_begin for t in got.flatten().tolist())  # the case really has timestamps
    for a, b in zip(expected, got):
        assert tok.decode(b, output_offsets=True) == oracle_tok.decode(a, output_offsets=True)


@needs_audio_tools
def test_generate_on_real_speech_equals_oracle(models, speech_16k):  # noqa: F811
    theirs, ours = models
    features = torch.from_numpy(WhisperFeatureExtractor()(speech_16k, sampling_rate=16000)["input_features"])
    for kwargs in ({}, {"return_timestamps": True}):
        assert torch.equal(ours.generate(features, **kwargs), theirs.generate(features, **kwargs))


def test_save_round_trip_loads_in_oracle(models, features, tmp_path):
    theirs, ours = models
    ours.save_pretrained(tmp_path)
    again = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[272, 273, 374, 378, 300]])
    with torch.no_grad():
        assert torch.equal(again(input_features=features[:1], decoder_input_ids=ids).logits,
                           theirs(input_features=features[:1], decoder_input_ids=ids).logits)
    assert type(AutoModelForSpeechSeq2Seq.from_pretrained(tmp_path)) is WhisperForConditionalGeneration


def test_bad_inputs_raise_formers_errors(models, features):
    _, ours = models
    with pytest.raises(ConfigError, match=r"input_features must be \[batch, 80, 3000\]"):
        ours(input_features=features[:, :, :100], decoder_input_ids=torch.tensor([[272]] * 2))
    with pytest.raises(GenerationError, match="return_timestamps=True"):
        ours.generate(torch.zeros(1, 80, 4000), return_timestamps=False)
    with pytest.raises(GenerationError, match="attention_mask"):
        ours.generate(torch.zeros(2, 80, 4000), return_timestamps=True)
    with pytest.raises(GenerationError, match="klingon"):
        ours.generate(features[:1], language="klingon")
    with pytest.raises(GenerationError, match="max_target_positions=64"):
        ours.generate(features[:1], max_new_tokens=80)
    assert np.isfinite(features.numpy()).all()


def test_fresh_encoder_position_table_equals_oracle():
    config = {"vocab_size": 100, "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
                  "decoder_attention_heads": 2, "encoder_ffn_dim": 16, "decoder_ffn_dim": 16, "max_source_positions": 1500,
                  "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0, "decoder_start_token_id": 1}
    theirs = transformers.WhisperModel(transformers.WhisperConfig(**config)).encoder.embed_positions.weight
    ours = WhisperModel(WhisperConfig(**config)).encoder.embed_positions.weight
    assert (ours - theirs).abs().max() <= 1e-6


@needs_audio_tools
def test_long_form_over_45s_equals_oracle(models, speech_16k):  # noqa: F811
    theirs, ours = models
    audio = np.concatenate([speech_16k] * (int(45 * 16000 / len(speech_16k)) + 1))[: 45 * 16000]
    batch = WhisperFeatureExtractor()([audio, audio[: 38 * 16000]], sampling_rate=16000, truncation=False,
                                      padding="longest", return_attention_mask=True, return_tensors="pt")
    features, mask = batch["input_features"], batch["attention_mask"]
    assert features.shape[-1] == 4500
    for kwargs in ({"return_timestamps": True}, {"return_timestamps": True, "language": "en"}):
        expected = theirs.generate(features, attention_mask=mask, **kwargs)
        got = ours.generate(features, attention_mask=mask, **kwargs)
        assert torch.equal(got, expected)
    one = ours.generate(features[:1], return_timestamps=True, return_segments=True)
    assert len(one["segments"][0]) >= 2 and one["segments"][0][-1]["end"] > 30.0  # really past one window


@pytest.mark.parametrize("kwargs", [{"temperature": (0.0, 0.4, 0.8), "compression_ratio_threshold": 0.5},
                                    {"temperature": (0.0, 0.5), "compression_ratio_threshold": 0.8,
                                     "return_timestamps": True},
                                    {"temperature": (0.0, 0.4, 0.8), "logprob_threshold": -3.0},
                                    {"temperature": (0.0, 0.5), "logprob_threshold": -2.0, "return_timestamps": True},
                                    {"temperature": (0.0, 0.5, 1.0), "logprob_threshold": -10.0,
                                     "compression_ratio_threshold": 0.9}],
                         ids=["ratio", "ratio-timestamps", "logprob", "logprob-timestamps", "both"])
def test_temperature_fallback_equals_oracle(models, features, kwargs):
    theirs, ours = models
    torch.manual_seed(7)
    expected = theirs.generate(features, **kwargs)
    torch.manual_seed(7)
    got = ours.generate(features, **kwargs)
    assert torch.equal(got, expected)
    greedy = ours.generate(features, return_timestamps=kwargs.get("return_timestamps"))
    assert not torch.equal(got, greedy)  # the threshold really sent rows to sampling


def test_long_form_fallback_equals_oracle(models):
    theirs, ours = models
    torch.manual_seed(3)
    features = torch.randn(1, 80, 4500)
    kwargs = {"temperature": (0.0, 0.4, 0.8), "compression_ratio_threshold": 0.8, "return_timestamps": True}
    torch.manual_seed(7)
    expected = theirs.generate(features, **kwargs)
    torch.manual_seed(7)
    assert torch.equal(ours.generate(features, **kwargs), expected)
    assert not torch.equal(ours.generate(features, return_timestamps=True), expected)  # sampling was used


def test_fallback_measures_equal_oracle():
    from formers.models.whisper.fallback import average_logprob, compression_ratio
    oracle = transformers.WhisperForConditionalGeneration
    generator = torch.Generator().manual_seed(0)
    for length in (3, 12, 40):
        tokens = torch.randint(0, 50, (length,), generator=generator)
        tokens[-1] = 7  # an eos
        scores = torch.randn(length - 1, 60, generator=generator)
        for temperature in (0.0, 0.6):
            expected = oracle._retrieve_avg_logprobs(tuple(scores), tokens, 7, temperature)
            assert average_logprob(scores, tokens, 7, temperature) == pytest.approx(float(expected), abs=1e-6)
        assert compression_ratio(tokens, 1880) == oracle._retrieve_compression_ratio(tokens, 1880)
