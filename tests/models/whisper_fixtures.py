"""Shared fixtures for Whisper/ASR tests: real speech synthesised at test time by espeak-ng.

CI installs espeak-ng and ffmpeg (.ci/run), so there a missing binary fails the tests; elsewhere they skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ESPEAK = shutil.which("espeak-ng")
FFMPEG = shutil.which("ffmpeg")
needs_audio_tools = pytest.mark.skipif(not (ESPEAK and FFMPEG) and not os.environ.get("CI"),
                                       reason="espeak-ng and ffmpeg (Debian packages) are not installed")

SENTENCE = "The quick brown fox jumps over the lazy dog. Whisper listens to speech."


def speak_to_wav(text: str, path: Path) -> Path:
    """Synthesise `text` with espeak-ng into a WAV file (22.05 kHz mono)."""
    subprocess.run([ESPEAK or "espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def decode_16k(path: Path) -> np.ndarray:
    """Decode any audio file to 16 kHz mono float32 with ffmpeg (independent of formers' own decoder)."""
    out = subprocess.run([FFMPEG or "ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1",
                          "-ar", "16000", "-f", "f32le", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.float32).copy()


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    return speak_to_wav(SENTENCE, tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="session")
def speech_16k(speech_wav) -> np.ndarray:
    return decode_16k(speech_wav)


def write_tiny_whisper(folder: Path, init_std: float = 0.2, seed: int = 0) -> Path:
    """A tiny random Whisper checkpoint saved by transformers 4.45.2, with the small-vocabulary tokenizer,
    a feature extractor and a Whisper-style generation config (languages, tasks, timestamps)."""
    import torch
    import transformers
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    from tests.models.whisper_tokenizer_files import write_whisper_tokenizer

    write_whisper_tokenizer(folder)
    tok = transformers.WhisperTokenizer.from_pretrained(folder)
    ids = tok.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    config = transformers.WhisperConfig(
        vocab_size=len(tok), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_target_positions=64,
        decoder_start_token_id=ids("<|startoftranscript|>"), pad_token_id=eot, eos_token_id=eot, bos_token_id=eot,
        init_std=init_std)
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, pad_token_id=eot, eos_token_id=eot, bos_token_id=eot,
        max_length=20, begin_suppress_tokens=[220, eot], suppress_tokens=[1, 2, 7],
        no_timestamps_token_id=ids("<|notimestamps|>"), is_multilingual=True, max_initial_timestamp_index=50,
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES}, return_timestamps=False,
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        alignment_heads=[[1, 0], [1, 2]])
    model.save_pretrained(folder)
    extractor = transformers.WhisperFeatureExtractor()
    extractor._set_processor_class("WhisperProcessor")
    extractor.save_pretrained(folder)
    return folder
