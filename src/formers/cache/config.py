"""Cache configs passed as `generate(cache_config=...)` (an object or a plain dict), as in transformers 4.45.

Departure: `QuantizedCacheConfig.backend` defaults to "native" (formers' own torch quantizer, no extra
package) instead of "quanto", so `cache_implementation="quantized"` works out of the box.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any

import torch

from ..errors import ConfigError

QUANT_BACKENDS = ("native", "quanto", "HQQ")


class CacheConfig:
    """Base of cache configs: dict round-trip, json, `update`."""

    cache_implementation: str | None = None

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> "CacheConfig":
        """Build from a dict; `kwargs` naming existing attributes override it."""
        unknown = sorted(set(config_dict) - set(cls().__dict__))
        if unknown:
            raise ConfigError(f"cache_config: unknown keys {unknown} for {cls.__name__}; "
                              f"expected some of {sorted(cls().__dict__)}")
        config = cls(**config_dict)
        config.update(**kwargs)
        return config

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)

    def __iter__(self):
        yield from self.to_dict().items()

    def to_json_string(self) -> str:
        return json.dumps(self.__dict__, indent=2, default=str) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        with open(json_file_path, "w", encoding="utf-8") as writer:
            writer.write(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n")

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the attributes `kwargs` name; return the kwargs that matched none."""
        unused = {}
        for key, value in kwargs.items():
            if key in self.__dict__:
                setattr(self, key, value)
            else:
                unused[key] = value
        return unused

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""


def field_error(key: str, expected: str, found: Any) -> ConfigError:
    """The error for a bad cache_config field: names it, what was expected and what came."""
    return ConfigError(f"cache_config.{key}: expected {expected}, got {found!r}")


class QuantizedCacheConfig(CacheConfig):
    """Settings of QuantizedCache (KIVI-style: keys per channel, values per token, a full-precision
    residual of the newest `residual_length` tokens)."""

    cache_implementation = "quantized"

    def __init__(self, backend: str = "native", nbits: int | None = 4, axis_key: int | None = 0,
                 axis_value: int | None = 0, q_group_size: int | None = 64, residual_length: int | None = 128,
                 compute_dtype: torch.dtype | None = torch.float16, device: str | None = "cpu") -> None:
        self.backend = backend
        self.nbits = nbits
        self.axis_key = axis_key
        self.axis_value = axis_value
        self.q_group_size = q_group_size
        self.residual_length = residual_length
        self.compute_dtype = compute_dtype
        self.device = device

    def validate(self) -> None:
        if self.backend not in QUANT_BACKENDS:
            raise field_error("backend", f"one of {list(QUANT_BACKENDS)}", self.backend)
        if self.nbits not in (1, 2, 3, 4, 8):
            raise field_error("nbits", "2, 4 or 8 (1 and 3 with HQQ)", self.nbits)
        if not isinstance(self.q_group_size, int) or self.q_group_size <= 0:
            raise field_error("q_group_size", "a positive integer", self.q_group_size)
        if not isinstance(self.residual_length, int) or self.residual_length < 0:
            raise field_error("residual_length", "a non-negative integer", self.residual_length)
        for key, axis in (("axis_key", self.axis_key), ("axis_value", self.axis_value)):
            if axis not in (0, 1, -1):
                raise field_error(key, "0, 1 or -1", axis)


def as_quantized_config(cache_config: QuantizedCacheConfig | dict | None) -> QuantizedCacheConfig:
    """A validated QuantizedCacheConfig from a config, a dict or None (the defaults); anything else is a
    ConfigError."""
    if cache_config is not None and not isinstance(cache_config, (dict, QuantizedCacheConfig)):
        raise ConfigError(f"cache_config must be a dict or a QuantizedCacheConfig, got {type(cache_config).__name__}")
    if cache_config is None:
        cache_config = QuantizedCacheConfig()
    elif isinstance(cache_config, dict):
        cache_config = QuantizedCacheConfig.from_dict(cache_config)
    cache_config.validate()
    return cache_config


class StaticCacheConfig(CacheConfig):
    """Settings of StaticCache given through `cache_config` (generate() sizes the cache itself)."""

    cache_implementation = "static"

    def __init__(self, batch_size: int = 1, max_cache_len: int = 1, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.max_cache_len = max_cache_len
        self.device = device

    def validate(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise field_error("batch_size", "> 0", self.batch_size)
        if not isinstance(self.max_cache_len, int) or self.max_cache_len <= 0:
            raise field_error("max_cache_len", "> 0", self.max_cache_len)
