"""WhisperFeatureExtractor: 16 kHz mono audio -> log-mel spectrogram, padded/truncated to 30 s.

Data flow (per clip): pad/truncate to n_samples -> (optional zero-mean/unit-variance) -> torch.stft with
a Hann window (n_fft=400, hop=160, centred, reflect-padded) -> |.|^2 without the last frame -> mel filters
(slaney, 0-8 kHz) -> log10 clamped at 1e-10 -> floor at (clip max - 8) -> (x + 4) / 4.
Output: input_features (batch, feature_size, n_samples // hop_length).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ...audio_utils import mel_filter_bank
from ...errors import AudioInputError, ConfigError
from ...feature_extraction_utils import BatchFeature, FeatureExtractionMixin

logger = logging.getLogger("formers.whisper")


class WhisperFeatureExtractor(FeatureExtractionMixin):
    model_input_names: ClassVar[list[str]] = ["input_features"]
    derived_fields = ("n_samples", "nb_max_frames")

    def __init__(self, feature_size: int = 80, sampling_rate: int = 16000, hop_length: int = 160,
                 chunk_length: int = 30, n_fft: int = 400, padding_value: float = 0.0,
                 return_attention_mask: bool = False, padding_side: str = "right", **kwargs: Any):
        self.feature_size = feature_size
        self.sampling_rate = sampling_rate
        self.padding_value = padding_value
        self.padding_side = padding_side
        self.return_attention_mask = return_attention_mask
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.chunk_length = chunk_length
        self.n_samples = chunk_length * sampling_rate
        self.nb_max_frames = self.n_samples // hop_length
        for key, value in kwargs.items():  # unknown json fields are kept, as transformers does
            setattr(self, key, value)
        self._mel_filters = mel_filter_bank(1 + n_fft // 2, feature_size, 0.0, 8000.0, sampling_rate,
                                            norm="slaney", mel_scale="slaney")

    @property
    def mel_filters(self) -> np.ndarray:
        """(1 + n_fft // 2, feature_size) float64 filter bank."""
        return self._mel_filters

    # ---- steps ----------------------------------------------------------------------------------
    def _as_clips(self, raw_speech: Any) -> list[np.ndarray]:
        """Normalise the accepted input shapes to a list of 1-D float32 clips."""
        if isinstance(raw_speech, torch.Tensor):
            raw_speech = raw_speech.detach().cpu().numpy()
        if isinstance(raw_speech, np.ndarray):
            if raw_speech.ndim > 2:
                raise AudioInputError(f"raw_speech: expected mono audio (1-D, or 2-D batch), got shape "
                                      f"{raw_speech.shape}")
            clips = list(raw_speech) if raw_speech.ndim == 2 else [raw_speech]
        elif isinstance(raw_speech, (list, tuple)) and raw_speech and \
                isinstance(raw_speech[0], (np.ndarray, list, tuple, torch.Tensor)):
            clips = [np.asarray(c.cpu() if isinstance(c, torch.Tensor) else c) for c in raw_speech]
        else:
            clips = [np.asarray(raw_speech)]
        for index, clip in enumerate(clips):
            if clip.ndim != 1:
                raise AudioInputError(f"raw_speech[{index}]: expected mono audio (one value per sample), "
                                      f"got shape {clip.shape}")
            if clip.size == 0:
                raise AudioInputError(f"raw_speech[{index}]: the audio is empty (0 samples)")
            if not np.issubdtype(clip.dtype, np.number):
                raise AudioInputError(f"raw_speech[{index}]: expected numbers, got dtype {clip.dtype}")
        return [clip.astype(np.float32) for clip in clips]

    def _pad(self, clips: Sequence[np.ndarray], padding: str | bool, max_length: int | None,
             truncation: bool, pad_to_multiple_of: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Truncate then pad every clip to one length; returns (samples, sample mask), both (batch, length)."""
        def rounded(length: int) -> int:
            return -(-length // pad_to_multiple_of) * pad_to_multiple_of if pad_to_multiple_of else length

        if truncation and max_length is not None:
            clips = [clip[:rounded(max_length)] for clip in clips]
        if padding in ("longest", True):
            length = rounded(max(len(clip) for clip in clips))
        elif padding == "max_length":
            length = rounded(max_length)
        elif padding in (False, "do_not_pad"):
            length = max(len(clip) for clip in clips)
            if len({len(clip) for clip in clips}) > 1:
                raise AudioInputError("padding=False with clips of different lengths: pad them or pass one clip")
        else:
            raise ConfigError(f"padding={padding!r}: expected 'max_length', 'longest', True or False")
        samples = np.full((len(clips), length), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(clips), length), dtype=np.int32)
        for row, clip in enumerate(clips):
            kept = clip[:length]
            if self.padding_side == "left":
                samples[row, length - len(kept):], mask[row, length - len(kept):] = kept, 1
            else:
                samples[row, :len(kept)], mask[row, :len(kept)] = kept, 1
        return samples, mask

    @staticmethod
    def zero_mean_unit_var_norm(samples: np.ndarray, mask: np.ndarray, padding_value: float = 0.0) -> np.ndarray:
        """Normalise each row over its real samples; padding gets `padding_value`."""
        rows = []
        for row, length in zip(samples, mask.sum(-1)):
            real = row[:length]
            normed = (row - real.mean()) / np.sqrt(real.var() + 1e-7)
            normed[length:] = padding_value
            rows.append(normed)
        return np.stack(rows).astype(np.float32)

    def log_mel(self, samples: torch.Tensor) -> torch.Tensor:
        """(batch, n) float32 waveforms -> (batch, feature_size, n // hop_length) Whisper log-mel features."""
        window = torch.hann_window(self.n_fft, device=samples.device)
        spectrum = torch.stft(samples, self.n_fft, self.hop_length, window=window, return_complex=True)
        power = spectrum[..., :-1].abs() ** 2
        filters = torch.from_numpy(self._mel_filters).to(device=samples.device, dtype=torch.float32)
        log_spec = torch.clamp(filters.T @ power, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0

    # ---- the call -------------------------------------------------------------------------------
    def __call__(self, raw_speech: Any, truncation: bool = True, pad_to_multiple_of: int | None = None,
                 return_tensors: str | None = None, return_attention_mask: bool | None = None,
                 padding: str | bool = "max_length", max_length: int | None = None,
                 sampling_rate: int | None = None, do_normalize: bool | None = None, device: str = "cpu",
                 return_token_timestamps: bool | None = None, **kwargs: Any) -> BatchFeature:
        """Featurise one clip or a batch of clips (1-D arrays/lists at `self.sampling_rate` Hz)."""
        if sampling_rate is None:
            logger.warning("WhisperFeatureExtractor: pass `sampling_rate` so a wrong rate cannot go unnoticed")
        elif sampling_rate != self.sampling_rate:
            raise AudioInputError(f"sampling_rate={sampling_rate}: this feature extractor expects "
                                  f"{self.sampling_rate} Hz audio; resample the audio first")
        clips = self._as_clips(raw_speech)
        samples, mask = self._pad(clips, padding, max_length or self.n_samples, truncation, pad_to_multiple_of)
        if do_normalize:
            samples = self.zero_mean_unit_var_norm(samples, mask, self.padding_value)
        features = self.log_mel(torch.from_numpy(samples).to(device)).cpu().numpy()
        output: dict[str, Any] = {"input_features": features}
        if return_attention_mask:
            output["attention_mask"] = mask[:, ::self.hop_length]
        if return_token_timestamps is not None:
            output["num_frames"] = [len(clip) // self.hop_length for clip in clips]
        return BatchFeature(output, tensor_type=return_tensors)
