"""Typed values passed between tools and agents (transformers 4.45's AgentText / AgentImage / AgentAudio).

Each wraps the raw value a tool produced; `to_raw()` gives it back, `to_string()` gives what an LLM sees.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any


class AgentType:
    """Base of the wrapped tool values."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def to_raw(self) -> Any:
        return self._value

    def to_string(self) -> str:
        return str(self._value)

    def __str__(self) -> str:
        return self.to_string()


class AgentText(AgentType, str):
    """Text output: behaves as the `str` it wraps."""

    def __new__(cls, value: Any) -> "AgentText":
        return str.__new__(cls, value)

    def __init__(self, value: Any) -> None:
        AgentType.__init__(self, value)

    def to_raw(self) -> str:
        return str(self._value)

    def to_string(self) -> str:
        return str(self._value)


class _FileBacked(AgentType):
    """An image or audio value; `to_string()` writes it to a temporary file once and returns the path."""

    suffix = ".bin"

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self._path = value if isinstance(value, (str, os.PathLike)) else None

    def to_string(self) -> str:
        if self._path is None:
            self._path = os.path.join(tempfile.mkdtemp(), f"{uuid.uuid4().hex}{self.suffix}")
            self._write(self._path)
        return str(self._path)

    def _write(self, path: str) -> None:
        raise NotImplementedError


class AgentImage(_FileBacked):
    """An image (a PIL image, a path, or a tensor a tool returned)."""

    suffix = ".png"

    def _write(self, path: str) -> None:
        save = getattr(self._value, "save", None)
        if save is None:
            raise TypeError(f"AgentImage cannot write a {type(self._value).__name__} to a file")
        save(path)


class AgentAudio(_FileBacked):
    """Audio: a path, or a (waveform, sampling rate) pair written as WAV."""

    suffix = ".wav"

    def __init__(self, value: Any, samplerate: int = 16_000) -> None:
        super().__init__(value)
        self.samplerate = samplerate

    def _write(self, path: str) -> None:
        import wave

        import numpy as np

        samples = np.asarray(self._value, dtype=np.float32).reshape(-1)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        with wave.open(path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.samplerate)
            out.writeframes(pcm.tobytes())


AGENT_TYPE_MAPPING = {"string": AgentText, "image": AgentImage, "audio": AgentAudio}


def handle_agent_inputs(*args, **kwargs) -> tuple[list, dict]:
    """Unwrap agent values before a tool's forward sees them."""
    args = [arg.to_raw() if isinstance(arg, AgentType) else arg for arg in args]
    kwargs = {key: value.to_raw() if isinstance(value, AgentType) else value for key, value in kwargs.items()}
    return args, kwargs


def handle_agent_outputs(output: Any, output_type: str | None = None) -> Any:
    """Wrap a tool's output in the agent type its `output_type` names (plain strings become AgentText)."""
    if output_type in AGENT_TYPE_MAPPING:
        return AGENT_TYPE_MAPPING[output_type](output)
    if isinstance(output, str) and not isinstance(output, AgentType):
        return AgentText(output)
    return output
