"""QuantoQuantizedCache and HQQQuantizedCache: transformers 4.45's quantized-cache algorithm run on the
`quanto` / `hqq` packages, so a script that asks for those backends gets 4.45's tokens.

4.45's algorithm: the prompt is quantized whole; each later token joins a full-precision residual; once
the residual would reach `residual_length` tokens, the whole history is dequantized, joined with the
residual and quantized again. Every step dequantizes the whole history, so per-token cost grows with
the context. These classes exist for compatibility; `QuantizedCache` (backend "native") is formers' fast
path, which quantizes each block once and attends on the packed codes.

The packages are imported only when one of these caches is built, and a missing one is named.
"""
from __future__ import annotations

import importlib
from typing import Any

import torch

from ..errors import CacheError
from .base import Cache
from .config import QuantizedCacheConfig, as_quantized_config, field_error


def _import_first(modules: tuple[str, ...], cache_name: str, install: str):
    """The first of `modules` that imports; CacheError naming the package to install when none does."""
    failures = []
    for module in modules:
        try:
            return importlib.import_module(module)
        except ImportError as error:
            failures.append(f"{module}: {error}")
    raise CacheError(f"{cache_name} needs the `{install}` package, which could not be imported (pip install {install}); "
                     f"or use QuantizedCache / backend='native' ({'; '.join(failures)})")


class _PackageQuantizedCache(Cache):
    """The 4.45 algorithm; subclasses say how their package quantizes and dequantizes one tensor."""

    def __init__(self, cache_config: QuantizedCacheConfig | dict | None = None) -> None:
        config = as_quantized_config(cache_config)
        self.cache_config = config
        self.nbits, self.residual_length, self.q_group_size = config.nbits, config.residual_length, config.q_group_size
        self.axis_key, self.axis_value = config.axis_key, config.axis_value
        self.compute_dtype, self.device = config.compute_dtype, config.device
        self._quantized: list[tuple[Any, Any]] = []  # per layer: (keys, values) in the package's form
        self._residual: list[tuple[torch.Tensor, torch.Tensor] | None] = []  # newest tokens, full precision
        self._lengths: list[int] = []

    def _quantize(self, tensor: torch.Tensor, axis: int) -> Any:
        raise NotImplementedError

    def _dequantize(self, quantized: Any) -> torch.Tensor:
        raise NotImplementedError

    def _payload(self, quantized: Any) -> list[torch.Tensor]:
        """The plain tensors holding one quantized tensor's bytes."""
        raise NotImplementedError

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx == len(self._quantized):
            self._quantized.append((self._quantize(key_states.contiguous(), self.axis_key),
                                    self._quantize(value_states.contiguous(), self.axis_value)))
            self._residual.append(None)
            self._lengths.append(key_states.shape[-2])
            return key_states, value_states
        if layer_idx > len(self._quantized):
            raise CacheError(f"{type(self).__name__}.update: layer {layer_idx} written before layer "
                             f"{len(self._quantized)}")
        quantized_keys, quantized_values = self._quantized[layer_idx]
        residual = self._residual[layer_idx]
        held_keys, held_values = ([residual[0]], [residual[1]]) if residual is not None else ([], [])
        keys = torch.cat([self._dequantize(quantized_keys), *held_keys, key_states], dim=-2)
        values = torch.cat([self._dequantize(quantized_values), *held_values, value_states], dim=-2)
        self._lengths[layer_idx] += key_states.shape[-2]
        if residual is not None and residual[0].shape[-2] + 1 >= self.residual_length:
            self._quantized[layer_idx] = (self._quantize(keys.contiguous(), self.axis_key),
                                          self._quantize(values.contiguous(), self.axis_value))
            self._residual[layer_idx] = None
        elif residual is None:
            self._residual[layer_idx] = (key_states, value_states)
        else:
            self._residual[layer_idx] = (torch.cat([residual[0], key_states], dim=-2),
                                         torch.cat([residual[1], value_states], dim=-2))
        return keys, values

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        layer_idx = layer_idx or 0
        return self._lengths[layer_idx] if layer_idx < len(self._lengths) else 0

    def reset(self) -> None:
        self._quantized, self._residual, self._lengths = [], [], []

    def get_memory_footprint(self) -> int:
        """Bytes of the quantized tensors (codes, scales, offsets) and the residual of every layer."""
        tensors = [t for pair in self._quantized for part in pair for t in self._payload(part)]
        tensors += [t for pair in self._residual if pair for t in pair]
        return sum(t.untyped_storage().nbytes() for t in tensors)

    def __len__(self) -> int:
        return len(self._quantized)

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All keys/values of `layer_idx`, dequantized."""
        (keys, values), residual = self._quantized[layer_idx], self._residual[layer_idx]
        keys, values = self._dequantize(keys), self._dequantize(values)
        if residual is None:
            return keys, values
        return torch.cat([keys, residual[0]], dim=-2), torch.cat([values, residual[1]], dim=-2)


class QuantoQuantizedCache(_PackageQuantizedCache):
    """Quantized cache on quanto's affine quantizer (int2/int4; `quanto`, or its successor `optimum-quanto`)."""

    def __init__(self, cache_config: QuantizedCacheConfig | dict | None = None) -> None:
        super().__init__(cache_config)
        if self.nbits not in (2, 4):
            raise field_error("nbits", "2 or 4 for the quanto backend", self.nbits)
        for key, axis in (("axis_key", self.axis_key), ("axis_value", self.axis_value)):
            if axis not in (0, -1):
                raise field_error(key, "0 or -1 for the quanto backend", axis)
        self._quanto = _import_first(("quanto", "optimum.quanto"), type(self).__name__, "quanto")
        self._legacy = self._quanto.__name__ == "quanto"  # 4.45's package; its optimizer takes bits
        self.qtype = self._quanto.qint4 if self.nbits == 4 else self._quanto.qint2
        self.optimizer = self._quanto.MaxOptimizer()

    def _quantize(self, tensor: torch.Tensor, axis: int) -> Any:
        if self._legacy:
            scale, zeropoint = self.optimizer(tensor, self.qtype.bits, axis, self.q_group_size)
            return self._quanto.AffineQuantizer.apply(tensor, self.qtype, axis, self.q_group_size, scale, zeropoint)
        scale, shift = self.optimizer(tensor, self.qtype, axis, self.q_group_size)
        return self._quanto.quantize_weight(tensor, self.qtype, axis, scale, shift, self.q_group_size)

    def _dequantize(self, quantized: Any) -> torch.Tensor:
        return quantized.dequantize()

    def _payload(self, quantized: Any) -> list[torch.Tensor]:
        inner, _ = quantized.__tensor_flatten__()
        return [t for name in inner for t in self._payload_of(getattr(quantized, name))]

    def _payload_of(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        if type(tensor) is torch.Tensor:
            return [tensor]
        return self._payload(tensor)


class HQQQuantizedCache(_PackageQuantizedCache):
    """Quantized cache on HQQ's half-quadratic quantizer (1, 2, 3, 4 or 8 bits; package `hqq`)."""

    def __init__(self, cache_config: QuantizedCacheConfig | dict | None = None) -> None:
        super().__init__(cache_config)
        for key, axis in (("axis_key", self.axis_key), ("axis_value", self.axis_value)):
            if axis not in (0, 1):
                raise field_error(key, "0 or 1 for the HQQ backend", axis)
        self.quantizer = _import_first(("hqq.core.quantize",), type(self).__name__, "hqq").Quantizer

    def _quantize(self, tensor: torch.Tensor, axis: int) -> Any:
        codes, meta = self.quantizer.quantize(tensor, axis=axis, device=self.device, compute_dtype=self.compute_dtype,
                                              nbits=self.nbits, group_size=self.q_group_size)
        meta["compute_dtype"] = self.compute_dtype
        return self.quantizer.cuda(codes, meta=meta, device=self.device)  # onto `device`, meta in compute dtype

    def _dequantize(self, quantized: Any) -> torch.Tensor:
        codes, meta = quantized
        return self.quantizer.dequantize(codes, meta)

    def _payload(self, quantized: Any) -> list[torch.Tensor]:
        codes, meta = quantized
        return [codes] + [value for value in meta.values() if isinstance(value, torch.Tensor)]
