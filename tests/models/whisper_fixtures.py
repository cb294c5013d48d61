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
