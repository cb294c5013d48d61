"""formers' exception types.

Every message names the file, field or argument at fault and what was expected, so a user can fix
the input without reading our source. Each type also subclasses the builtin a transformers user
would catch (ValueError, OSError, ...), so ported ``except`` clauses keep working.
"""
from __future__ import annotations


class FormersError(Exception):
    """Base of every error formers raises on purpose."""


class ConfigError(FormersError, ValueError):
    """A config.json / generation_config.json field is missing, of the wrong type or inconsistent."""


class UnknownModelTypeError(ConfigError, KeyError):
    """config.json names a `model_type` (or architecture) formers does not implement."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(FormersError, OSError):
    """A checkpoint file is missing, truncated, or does not match the model."""


class HubFileNotFoundError(CheckpointError, FileNotFoundError):
    """A file is neither in the local folder / HF cache nor reachable on the hub."""


class UnsafeCheckpointError(FormersError, ValueError):
    """The checkpoint asks formers to execute code (trust_remote_code, pickles)."""


class TokenizerError(FormersError, ValueError):
    """Tokenizer files are missing or inconsistent, or arguments to encode/decode are invalid."""


class ChatTemplateError(TokenizerError):
    """A chat template is missing, fails to render, or raised through `raise_exception`."""


class GenerationError(FormersError, ValueError):
    """Invalid arguments to generate(): lengths, token ids, decoding settings."""


class AudioInputError(FormersError, ValueError):
    """Audio given to a feature extractor or the ASR pipeline is empty, not audio, or at the wrong sampling rate."""


class GrammarError(GenerationError):
    """A grammar / JSON schema / regex / response_format cannot be compiled or used for this tokenizer."""


class CacheError(FormersError, ValueError):
    """A KV cache is used beyond what it holds (capacity, batch size, skipped layers) or misconfigured."""


class UnknownTaskError(FormersError, KeyError):
    """pipeline() was given a task name formers does not implement; the message lists the supported ones."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class ServingError(FormersError, ValueError):
    """A request the serving engine cannot take: bad sampling parameters, a prompt that can never fit."""


class EngineOverloadedError(FormersError, RuntimeError):
    """The serving engine's waiting queue is full; retry later (HTTP 503)."""


class DistributedError(FormersError, RuntimeError):
    """torch.distributed is not set up as a call needs (no process group, a world size the model cannot be
    split by), or a collective failed because a peer rank died or timed out."""
