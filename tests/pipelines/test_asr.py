"""pipeline("automatic-speech-recognition"): outputs equal transformers 4.45.2's on a tiny random Whisper,
for arrays, {"raw", "sampling_rate"} dicts, files decoded by ffmpeg, timestamps and chunked long audio."""
from __future__ import annotations

import numpy as np
import pytest
import transformers

from formers import pipeline
from formers.errors import AudioInputError, ConfigError, GenerationError
from tests.models.whisper_fixtures import (
    decode_16k,
    needs_audio_tools,
    speak_to_wav,
    write_tiny_whisper,
)

pytestmark = needs_audio_tools


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = write_tiny_whisper(tmp_path_factory.mktemp("asr_whisper"))
    wav = speak_to_wav("Hello there, this is a test of speech recognition with a longer sentence.",
                       folder.parent / "speech.wav")
    theirs = transformers.pipeline("automatic-speech-recognition", model=str(folder))
    ours = pipeline("automatic-speech-recognition", model=str(folder))
    return theirs, ours, wav, decode_16k(wav)


CASES = [{}, {"return_timestamps": True}, {"chunk_length_s": 2.0}, {"chunk_length_s": 2.0, "return_timestamps": True},
         {"chunk_length_s": 3.0, "stride_length_s": [0.5, 1.0], "return_timestamps": True},
         {"return_timestamps": "word", "return_language": True,
          "generate_kwargs": {"language": "en", "max_new_tokens": 40}},
         {"return_timestamps": "word", "chunk_length_s": 3.0, "stride_length_s": [0.5, 1.0],
          "generate_kwargs": {"language": "en", "max_new_tokens": 30}}]


@pytest.mark.parametrize("kwargs", CASES, ids=[str(c) for c in CASES])
def test_array_input_equals_oracle(setup, kwargs):
    theirs, ours, _, audio = setup
    expected, got = theirs(audio, **kwargs), ours(audio, **kwargs)
    print(got)
    assert got == expected
    if kwargs.get("return_timestamps") == "word":
        assert len(got["chunks"]) >= 3


@pytest.mark.parametrize("kwargs", [{"return_timestamps": True}, {"return_timestamps": "word"}], ids=["segments", "word"])
def test_batched_chunks_equal_oracle(setup, kwargs):
    theirs, ours, _, audio = setup
    kwargs = {"chunk_length_s": 2.0, "batch_size": 3, **kwargs}
    if theirs.tokenizer.pad_token_id is None:  # 4.45 batches only with a pad token (the eos: already special)
        theirs.tokenizer.pad_token = theirs.tokenizer.eos_token
    expected = theirs(audio, **kwargs)
    assert ours(audio, **kwargs) == expected and len(expected["chunks"]) >= 1
    with pytest.raises(ConfigError, match="batch_size=0"):
        ours(audio, batch_size=0)


def test_long_audio_without_chunking_is_decoded_long_form_as_oracle(setup):
    theirs, ours, _, audio = setup
    long = np.concatenate([audio] * (int(40 * 16000 / len(audio)) + 1))
    assert len(long) > 30 * 16000
    assert ours(long, return_timestamps=True) == theirs(long, return_timestamps=True)
    words = ours(long, return_timestamps="word")
    assert words == theirs(long, return_timestamps="word") and words["chunks"][-1]["timestamp"][0] > 20.0
    with pytest.raises(GenerationError, match="return_timestamps=True"):  # 4.45 refuses it too (ValueError)
        ours(long)


def test_dict_file_bytes_and_list_inputs_equal_oracle(setup):
    theirs, ours, wav, audio = setup
    assert ours({"raw": audio, "sampling_rate": 16000}) == theirs({"raw": audio, "sampling_rate": 16000})
    assert ours({"array": audio, "sampling_rate": 16000}) == theirs({"array": audio, "sampling_rate": 16000})
    assert ours(str(wav), return_timestamps=True) == theirs(str(wav), return_timestamps=True)
    assert ours(wav.read_bytes()) == theirs(wav.read_bytes())
    assert ours([audio, audio[:16000]]) == theirs([audio, audio[:16000]])


def test_bad_audio_raises_formers_errors(setup, tmp_path):
    _, ours, _, audio = setup
    with pytest.raises(AudioInputError, match="sampling_rate=0: expected a positive integer"):
        ours({"raw": audio, "sampling_rate": 0})
    with pytest.raises(AudioInputError, match="sampling_rate='16k'"):
        ours({"raw": audio, "sampling_rate": "16k"})
    with pytest.raises(AudioInputError, match="empty"):
        ours(np.zeros(0, dtype=np.float32))
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioInputError, match="ffmpeg could not decode"):
        ours(str(not_audio))
    with pytest.raises(AudioInputError, match="cannot read audio file"):
        ours(str(tmp_path / "missing.wav"))
    with pytest.raises(AudioInputError, match="mono"):
        ours(np.zeros((2, 16000), dtype=np.float32))


def test_window_merging_equals_oracle():
    from transformers.models.whisper.tokenization_whisper import (
        _find_longest_common_sequence,
    )

    from formers.pipelines.asr_decode import merge_overlapping
    rng = np.random.default_rng(0)
    for _ in range(50):
        base = rng.integers(0, 30, size=40).tolist()
        cut = int(rng.integers(8, 30))
        overlap = int(rng.integers(2, 8))
        windows = [base[:cut], base[cut - overlap: cut + 10], base[cut + 10 - overlap:]]
        if rng.random() < 0.5:  # a differing token inside an overlap
            windows[1] = [*windows[1][:1], 99, *windows[1][2:]]
        assert merge_overlapping(windows) == _find_longest_common_sequence(windows)


def test_decode_of_strided_timestamped_windows_equals_oracle(tmp_path):
    import torch

    from formers.models.whisper import WhisperTokenizerFast
    from formers.pipelines.asr_decode import decode_asr
    from tests.models.whisper_tokenizer_files import write_whisper_tokenizer
    folder = write_whisper_tokenizer(tmp_path / "tok")
    theirs, ours = transformers.WhisperTokenizerFast.from_pretrained(folder), WhisperTokenizerFast.from_pretrained(folder)
    ts = ours.timestamp_begin
    words = [ours.encode(w, add_special_tokens=False) for w in (" the cat", " is there", " or the sea", " in the wind")]
    sot, en, fr = 272, ours.convert_tokens_to_ids("<|en|>"), ours.convert_tokens_to_ids("<|fr|>")
    windows = [[sot, en, ts, *words[0], ts + 40, ts + 40, *words[1], ts + 90, ts + 95, *words[2], 271],
               [sot, en, ts + 10, *words[1], ts + 50, ts + 50, *words[2], *words[3], ts + 120, 271],
               [sot, fr, ts, *words[3], ts + 30, ts + 60, *words[0], 271]]
    strides = [(3.0, 0.0, 0.5), (3.0, 0.5, 0.5), (2.0, 0.5, 0.0)]
    for timestamps in (False, True):
        for language in (None, True):
            outputs = [{"tokens": torch.tensor([w]), "stride": s} for w, s in zip(windows, strides)]
            expected = theirs._decode_asr([dict(o) for o in outputs], return_timestamps=timestamps,
                                          return_language=language, time_precision=0.02)
            assert decode_asr(ours, outputs, return_timestamps=timestamps, return_language=language,
                              time_precision=0.02) == expected


def test_word_grouping_and_timed_merging_equal_oracle(tmp_path):
    import torch
    from transformers.models.whisper.tokenization_whisper import (
        _collate_word_timestamps,
        _find_longest_common_sequence,
    )

    from formers.models.whisper import WhisperTokenizerFast
    from formers.pipelines.asr_decode import decode_asr, merge_overlapping
    from formers.pipelines.asr_words import collate_words
    from tests.models.whisper_tokenizer_files import write_whisper_tokenizer
    folder = write_whisper_tokenizer(tmp_path / "tok")
    theirs, ours = transformers.WhisperTokenizerFast.from_pretrained(folder), WhisperTokenizerFast.from_pretrained(folder)
    text = ' Hello, "world" (said he) -- it\'s the sea. Isn\'t it? é ü'
    tokens = ours.encode(text, add_special_tokens=False)
    times = [(round(0.1 * i, 2), round(0.1 * i + 0.1, 2)) for i in range(len(tokens))]
    for language in (None, "english", "japanese"):
        for flag in (None, True):
            expected = _collate_word_timestamps(theirs, tokens, times, language, flag)
            assert collate_words(ours, tokens, times, language, flag) == expected
    assert len(collate_words(ours, tokens, times, None, None)) >= 8
    rng = np.random.default_rng(1)
    for _ in range(30):
        base = rng.integers(0, 30, size=30).tolist()
        stamps = [(float(i), float(i + 1)) for i in range(30)]
        windows = [base[:18], base[12:]]
        timed = [stamps[:18], [(t - rng.integers(0, 2), e) for t, e in stamps[12:]]]
        assert merge_overlapping(windows, timed) == _find_longest_common_sequence(windows, timed)
    ts, sot, en = ours.timestamp_begin, 272, ours.convert_tokens_to_ids("<|en|>")
    windows = [[sot, en, ts, *tokens[:10], ts + 40, ts + 40, *tokens[10:16], 271],
               [sot, en, ts + 10, *tokens[12:], ts + 120, 271]]
    outputs = [{"tokens": torch.tensor([w]), "token_timestamps": [torch.arange(len(w)) * 0.07],
                "stride": s} for w, s in zip(windows, [(3.0, 0.0, 0.5), (3.0, 0.5, 0.0)])]
    for language in (None, True):
        expected = theirs._decode_asr([dict(o) for o in outputs], return_timestamps="word", return_language=language,
                                      time_precision=0.02)
        assert decode_asr(ours, outputs, return_timestamps="word", return_language=language,
                          time_precision=0.02) == expected


def test_other_sampling_rates_are_resampled(setup):
    """4.45 resamples {"raw", "sampling_rate"} input with torchaudio's windowed-sinc resampler (not installed
    here, so there is no bitwise oracle): ours must reproduce a sine exactly enough and agree with ffmpeg's
    own resampling of the same speech, and the pipeline must accept the native 22.05 kHz espeak audio."""
    import subprocess

    from formers.audio_utils import resample
    _, ours, wav, audio_16k = setup
    for rate in (8000, 22050, 44100, 48000):
        t = np.arange(rate * 2) / rate
        got = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), rate, 16000)
        assert len(got) == 32000
        expected = np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)
        assert np.abs(got - expected)[200:-200].max() < 1e-3
    native = np.frombuffer(subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-ac", "1",
                                           "-f", "f32le", "-"], check=True, capture_output=True).stdout, np.float32)
    ours_16k = resample(native, 22050, 16000)
    assert len(ours_16k) == len(audio_16k)
    assert np.corrcoef(ours_16k, audio_16k)[0, 1] > 0.999
    out = ours({"raw": native, "sampling_rate": 22050})
    assert out == ours(ours_16k) and isinstance(out["text"], str)
