"""Audio building blocks written once: Hz <-> mel scales and a triangular mel filter bank.

The filter bank is what librosa calls `mel(htk=False, norm="slaney")`; formers computes it itself in
float64 numpy so no audio library is needed. Shapes: filters are (num_frequency_bins, num_mel_filters).
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError

_MEL_SCALES = ("htk", "kaldi", "slaney")
# Slaney's scale is linear (3 mel per 200 Hz) below 1 kHz and logarithmic above, continuous at 15 mel.
_SLANEY_BREAK_HZ, _SLANEY_BREAK_MEL = 1000.0, 15.0
_SLANEY_LOG_STEP = 27.0 / np.log(6.4)


def _check_scale(mel_scale: str) -> None:
    if mel_scale not in _MEL_SCALES:
        raise ConfigError(f"mel_scale={mel_scale!r}: expected one of {', '.join(_MEL_SCALES)}")


def hertz_to_mel(freq: float | np.ndarray, mel_scale: str = "htk") -> float | np.ndarray:
    """Frequency in Hz -> mels on the chosen scale."""
    _check_scale(mel_scale)
    freq = np.asarray(freq, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    if mel_scale == "kaldi":
        return 1127.0 * np.log(1.0 + freq / 700.0)
    linear = 3.0 * freq / 200.0
    logarithmic = _SLANEY_BREAK_MEL + np.log(np.maximum(freq, 1e-30) / _SLANEY_BREAK_HZ) * _SLANEY_LOG_STEP
    return np.where(freq >= _SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hertz(mels: float | np.ndarray, mel_scale: str = "htk") -> float | np.ndarray:
    """Mels on the chosen scale -> frequency in Hz (inverse of `hertz_to_mel`)."""
    _check_scale(mel_scale)
    mels = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    if mel_scale == "kaldi":
        return 700.0 * (np.exp(mels / 1127.0) - 1.0)
    linear = 200.0 * mels / 3.0
    logarithmic = _SLANEY_BREAK_HZ * np.exp((mels - _SLANEY_BREAK_MEL) / _SLANEY_LOG_STEP)
    return np.where(mels >= _SLANEY_BREAK_MEL, logarithmic, linear)


def mel_filter_bank(num_frequency_bins: int, num_mel_filters: int, min_frequency: float, max_frequency: float,
                    sampling_rate: int, norm: str | None = None, mel_scale: str = "htk") -> np.ndarray:
    """Triangular filters, evenly spaced on the mel scale, over the FFT bins 0..sampling_rate/2.

    Filter m rises from edge m to its centre m+1 and falls to edge m+2 (num_mel_filters + 2 edges).
    `norm="slaney"` divides each triangle by its width in Hz so every band has about equal energy.
    """
    if norm not in (None, "slaney"):
        raise ConfigError(f"mel_filter_bank(norm={norm!r}): expected None or 'slaney'")
    edges_mel = np.linspace(hertz_to_mel(min_frequency, mel_scale), hertz_to_mel(max_frequency, mel_scale),
                            num_mel_filters + 2)
    edges_hz = mel_to_hertz(edges_mel, mel_scale)
    bin_hz = np.linspace(0, sampling_rate // 2, num_frequency_bins)
    widths = np.diff(edges_hz)                              # (num_mel_filters + 1,)
    offsets = edges_hz[None, :] - bin_hz[:, None]           # (bins, num_mel_filters + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    if norm == "slaney":
        filters = filters * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[None, :]
    return filters


def resample(waveform: np.ndarray, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> np.ndarray:
    """Band-limited (windowed-sinc, Hann window) polyphase resampling of 1-D float audio, the method and
    defaults of torchaudio.functional.resample, which transformers' ASR pipeline calls for other rates.

    For the reduced ratio orig:new, each of the `new` output phases is a dot product of the input with its
    own sinc kernel (cut off at rolloff x the lower Nyquist rate) -> one strided conv1d over the input.
    """
    import math

    import torch
    if orig_freq <= 0 or new_freq <= 0:
        raise ConfigError(f"resample: sampling rates must be positive, got {orig_freq} -> {new_freq}")
    if orig_freq == new_freq:
        return waveform
    divisor = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // divisor, int(new_freq) // divisor
    cutoff = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    phases = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new
    t = ((phases + taps) * cutoff).clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    signal = torch.from_numpy(np.array(waveform))  # a writable copy
    kernel = (sinc * window * (cutoff / orig)).to(signal.dtype)      # [new, 1, 2 * width + orig]
    padded = torch.nn.functional.pad(signal[None, None], (width, width + orig))
    out = torch.nn.functional.conv1d(padded, kernel, stride=orig)  # [1, new, frames]
    out = out.transpose(1, 2).reshape(-1)[: math.ceil(new * signal.shape[0] / orig)]
    return out.numpy()
