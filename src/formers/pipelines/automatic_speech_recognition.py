"""pipeline("automatic-speech-recognition") for Whisper: audio in (array, {"raw", "sampling_rate"}, file
path or bytes decoded by ffmpeg), text out, optionally with timestamped chunks; long audio is cut into
overlapping windows with chunk_length_s / stride_length_s and the windows' tokens are merged."""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..audio_utils import resample
from ..errors import AudioInputError, ConfigError
from .asr_decode import decode_asr
from .base import Pipeline


def ffmpeg_read(payload: bytes, sampling_rate: int) -> np.ndarray:
    """Decode any audio container/codec ffmpeg knows into mono float32 at `sampling_rate`."""
    binary = shutil.which("ffmpeg")
    if binary is None:
        raise AudioInputError("decoding an audio file needs the `ffmpeg` program (Debian package ffmpeg); "
                              "or pass the samples as a numpy array")
    done = subprocess.run([binary, "-nostdin", "-loglevel", "error", "-i", "pipe:0", "-ac", "1", "-ar",
                           str(sampling_rate), "-f", "f32le", "pipe:1"], input=payload, capture_output=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no reason given"]
        raise AudioInputError(f"ffmpeg could not decode the input as audio: {reason[0]}")
    audio = np.frombuffer(done.stdout, dtype=np.float32)
    if audio.size == 0:
        raise AudioInputError("the audio file decodes to 0 samples (empty or not audio)")
    return audio.copy()


class AutomaticSpeechRecognitionPipeline(Pipeline):
    task = "automatic-speech-recognition"

    def __init__(self, model, tokenizer=None, feature_extractor=None, **kwargs: Any):
        if model.config.model_type != "whisper":
            raise ConfigError(f"pipeline('automatic-speech-recognition'): formers supports Whisper models, got "
                              f"model_type {model.config.model_type!r}")
        if feature_extractor is None or isinstance(feature_extractor, str):
            from ..models.auto.feature_extraction_auto import AutoFeatureExtractor
            feature_extractor = AutoFeatureExtractor.from_pretrained(feature_extractor or
                                                                     model.config._name_or_path)
        self.feature_extractor = feature_extractor
        super().__init__(model, tokenizer, **kwargs)

    def _sanitize_parameters(self, chunk_length_s=None, stride_length_s=None, return_timestamps=None,
                             return_language=None, generate_kwargs=None, max_new_tokens=None, **kwargs):
        if kwargs:
            raise ConfigError(f"automatic-speech-recognition pipeline: unknown arguments {sorted(kwargs)}")
        if return_timestamps not in (None, True, False, "word"):
            raise ConfigError(f"return_timestamps={return_timestamps!r}: Whisper gives True (segments) or 'word'")
        pre = {k: v for k, v in (("chunk_length_s", chunk_length_s), ("stride_length_s", stride_length_s))
               if v is not None}
        forward = dict(generate_kwargs or {})
        if max_new_tokens is not None:
            forward["max_new_tokens"] = max_new_tokens
        if return_timestamps is not None:
            forward["return_timestamps"] = return_timestamps
        post = {k: v for k, v in (("return_timestamps", return_timestamps), ("return_language", return_language))
                if v is not None}
        return pre, forward, post

    # --- input -> windows ------------------------------------------------------------------------
    def _audio(self, inputs: Any) -> np.ndarray:
        rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str):
            try:
                with open(inputs, "rb") as handle:
                    inputs = handle.read()
            except OSError as error:
                raise AudioInputError(f"cannot read audio file {inputs!r}: {error.strerror}") from None
        if isinstance(inputs, (bytes, bytearray)):
            inputs = ffmpeg_read(bytes(inputs), rate)
        if isinstance(inputs, dict):
            samples = inputs.get("raw", inputs.get("array"))
            if samples is None or "sampling_rate" not in inputs:
                raise AudioInputError('a dict input needs "raw" (or "array") samples and their "sampling_rate"')
            given = inputs["sampling_rate"]
            if not isinstance(given, (int, np.integer)) or isinstance(given, bool) or given <= 0:
                raise AudioInputError(f"sampling_rate={given!r}: expected a positive integer number of Hz")
            inputs = samples
            if given != rate:  # band-limited resampling to the model's rate (torchaudio's method, in torch)
                inputs = resample(np.asarray(inputs), int(given), rate)
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.cpu().numpy()
        if not isinstance(inputs, np.ndarray):
            raise AudioInputError(f"expected a numpy array, a dict, a file path or bytes, got {type(inputs).__name__}")
        if inputs.ndim != 1:
            raise AudioInputError(f"expected mono audio (1-D samples), got shape {inputs.shape}")
        if inputs.size == 0:
            raise AudioInputError("the audio is empty (0 samples)")
        return inputs

    def _windows(self, audio: np.ndarray, chunk_length_s: float = 0,
                 stride_length_s: float | list[float] | None = None) -> Iterator[dict[str, Any]]:
        rate, extractor = self.feature_extractor.sampling_rate, self.feature_extractor
        if not chunk_length_s:  # > 30 s: the whole features, decoded long-form by generate()
            longer = audio.shape[0] > extractor.n_samples
            features = extractor(audio, sampling_rate=rate, return_tensors="pt", return_attention_mask=True,
                                 **({"truncation": False, "padding": "longest"} if longer else {}))
            window = {"features": features["input_features"], "attention_mask": features["attention_mask"]}
            if not longer:  # the clip's length in feature frames crops the alignment (4.45's num_frames)
                window["num_frames"] = [audio.shape[0] // extractor.hop_length]
            yield window
            return
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        left_s, right_s = (stride_length_s, stride_length_s) if isinstance(stride_length_s, (int, float)) \
            else stride_length_s
        chunk, left, right = (round(s * rate) for s in (chunk_length_s, left_s, right_s))
        if chunk < left + right:
            raise ConfigError("chunk_length_s must be larger than the two strides together")
        for start in range(0, audio.shape[0], chunk - left - right):
            piece = audio[start:start + chunk]
            is_last = start + chunk >= audio.shape[0]
            stride = (piece.shape[0], 0 if start == 0 else left, 0 if is_last else right)
            if piece.shape[0] > stride[1]:
                yield {"features": extractor(piece, sampling_rate=rate, return_tensors="pt")["input_features"],
                       "stride": stride}
            if is_last:
                break

    # --- running ----------------------------------------------------------------------------------
    def _generate(self, group: list[dict[str, Any]], forward: dict) -> list[dict[str, Any]]:
        """One generate() over a group of windows (stacked, as 4.45 batches chunks) -> one output per window."""
        kwargs = {"generation_config": self.generation_config, **forward}
        words = forward.get("return_timestamps") == "word"
        hop = self.feature_extractor.hop_length
        if words:  # token timestamps, cropped to the windows' real frames
            frames = group[0].get("num_frames")
            if "stride" in group[0]:
                frames = group[0]["stride"][0] // hop if len(group) == 1 else [w["stride"][0] // hop for w in group]
            kwargs.update(return_token_timestamps=True, return_segments=True, num_frames=frames)
        features = torch.cat([w["features"] for w in group]).to(self.device, self.model.dtype)
        with torch.inference_mode():
            if "attention_mask" in group[0]:
                kwargs["attention_mask"] = group[0]["attention_mask"].to(self.device)
            tokens = self.model.generate(features, **kwargs)
        outputs = []
        for row, window in enumerate(group):
            if words:
                times = torch.cat([s["token_timestamps"] for s in tokens["segments"][row]])
                output = {"tokens": tokens["sequences"][row:row + 1].cpu(), "token_timestamps": [times]}
            else:
                output = {"tokens": tokens[row:row + 1].cpu()}
            if "stride" in window:
                rate = self.feature_extractor.sampling_rate
                output["stride"] = tuple(value / rate for value in window["stride"])
            outputs.append(output)
        return outputs

    def _transcribe(self, inputs: Any, pre: dict, forward: dict, post: dict, batch_size: int = 1) -> dict[str, Any]:
        windows = list(self._windows(self._audio(inputs), **pre))
        size = batch_size if all("stride" in w for w in windows) else 1  # chunks are batched, as in 4.45
        outputs = []
        for start in range(0, len(windows), size):
            outputs += self._generate(windows[start:start + size], forward)
        precision = self.feature_extractor.chunk_length / self.model.config.max_source_positions
        text, extra = decode_asr(self.tokenizer, outputs, return_timestamps=post.get("return_timestamps", False),
                                 return_language=post.get("return_language"), time_precision=precision)
        return {"text": text, **extra}

    def __call__(self, inputs: Any, batch_size: int | None = None, **kwargs: Any):
        """`batch_size`: chunks (chunk_length_s) decoded together; separate inputs are decoded one by one."""
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size={batch_size!r}: expected a positive integer")
        size = batch_size or getattr(self, "_batch_size", None) or 1
        pre, forward, post = self._sanitize_parameters(**kwargs)
        pre, forward, post = ({**self._preprocess_params, **pre}, {**self._forward_params, **forward},
                              {**self._postprocess_params, **post})
        if isinstance(inputs, list):
            return [self._transcribe(item, pre, forward, post, size) for item in inputs]
        return self._transcribe(inputs, pre, forward, post, size)
