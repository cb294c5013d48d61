"""pipeline("automatic-speech-recognition"): outputs equal transformers 4.45.2's on a tiny random Whisper,
for arrays, {"raw", "sampling_rate"} dicts, files decoded by ffmpeg, timestamps and chunked long audio."""
from __future__ import annotations

import numpy as np
import pytest
import transformers

from formers import pipeline
from formers.errors import AudioInputError, GenerationError
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
         {"chunk_length_s": 3.0, "stride_length_s": [0.5, 1.0], "return_timestamps": True}]


@pytest.mark.parametrize("kwargs", CASES, ids=[str(c) for c in CASES])
def test_array_input_equals_oracle(setup, kwargs):
    theirs, ours, _, audio = setup
    expected, got = theirs(audio, **kwargs), ours(audio, **kwargs)
    print(got)
    assert got == expected


def test_long_audio_without_chunking_is_decoded_long_form_as_oracle(setup):
    theirs, ours, _, audio = setup
    long = np.concatenate([audio] * (int(40 * 16000 / len(audio)) + 1))
    assert len(long) > 30 * 16000
    assert ours(long, return_timestamps=True) == theirs(long, return_timestamps=True)
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
    with pytest.raises(AudioInputError, match="sampling_rate=8000.*16000 Hz"):
        ours({"raw": audio, "sampling_rate": 8000})
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
