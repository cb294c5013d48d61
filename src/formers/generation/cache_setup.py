"""Which cache generate() decodes with: the user's, the model's own (`make_generation_cache`), or a new
one of `cache_implementation`.

Models whose layers keep a running state (Mamba) decode with the state cache their
`make_generation_cache` returns whatever `cache_implementation` says ("mamba" names it; the attention
layouts are ignored with a warning, as 4.45 does).

Fixed-shape caches ("static", "offloaded_static", "sliding_window", "hybrid") are kept on the model
(`model._cache`, as transformers does) and reused through `reset()` — their buffers keep the same
addresses, so a compiled forward is not recompiled — unless the batch size, dtype or device changes
or a longer generation needs more room.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from ..cache import (Cache, HQQQuantizedCache, HybridCache, OffloadedCache, OffloadedStaticCache,
                     QuantizedCache, QuantoQuantizedCache, SlidingWindowCache, StaticCache)
from ..cache.config import StaticCacheConfig, as_quantized_config
from ..cache.static import sliding_window_of
from ..errors import ConfigError, GenerationError
from ..logging_utils import log_warning

logger = logging.getLogger(__name__)

# cache_implementation -> class built from (config, batch_size, max_cache_len, device, dtype)
FIXED_SHAPE_CACHES: dict[str, type[StaticCache]] = {
    "static": StaticCache, "offloaded_static": OffloadedStaticCache, "sliding_window": SlidingWindowCache,
    "hybrid": HybridCache,
}


def prepare_generation_cache(model, generation_config, user_cache, use_cache: bool | None, *, batch_size: int,
                             max_length: int, device: torch.device | None = None,
                             dtype: torch.dtype | None = None) -> Cache | None:
    """None when caching is off; the user's cache (legacy tuples converted); else a cache of
    `generation_config.cache_implementation` (when unset, or for state-space models: the model's
    `make_generation_cache`) for `batch_size` rows of `max_length` positions, on `device` in `dtype`
    (default: the model's)."""
    if use_cache is False or (use_cache is None and not generation_config.use_cache):
        return None
    implementation = generation_config.cache_implementation
    if user_cache is not None:
        if implementation is not None:
            raise GenerationError(f"generate(): pass either `past_key_values` or `cache_implementation` "
                                  f"({implementation!r}), not both")
        cache = user_cache if isinstance(user_cache, Cache) else model.cache_from_legacy(user_cache)
        cache.ensure_capacity(max_length)
        return cache
    device, dtype = device or model.device, dtype or model.dtype
    own = model.make_generation_cache(batch_size, max_length, device, dtype)
    if implementation is None or own.recurrent:
        if implementation not in (None, "mamba"):
            log_warning(logger, "%s keeps a recurrent state: cache_implementation=%r is ignored and its %s is "
                        "used.", type(model).__name__, implementation, type(own).__name__)
        return own
    builder = _BUILDERS.get(implementation)
    if builder is None:
        raise GenerationError(f"generate(): cache_implementation={implementation!r} is not one of "
                              f"{sorted(_BUILDERS)}")
    return builder(model, generation_config, batch_size, max_length, device, dtype)


def _fixed_shape(model, generation_config, batch_size: int, max_length: int, device, dtype) -> Cache:
    """The model's kept cache when it fits this call (reset), else a new one kept in its place."""
    implementation = generation_config.cache_implementation
    if implementation == "static" and generation_config.cache_config is not None:
        _static_config(generation_config.cache_config).validate()
    cls = FIXED_SHAPE_CACHES[implementation]
    config = model.config
    wanted = max_length
    if implementation == "sliding_window" and sliding_window_of(config) is not None:
        wanted = min(sliding_window_of(config), max_length)
    kept = model.__dict__.get("_cache")
    if (type(kept) is cls and kept.batch_size == batch_size and kept.max_cache_len >= wanted
            and kept.dtype == dtype and kept.device == torch.device(device)):
        kept.reset()
        return kept
    cache = cls(config, batch_size=batch_size, max_cache_len=max_length, device=device, dtype=dtype)
    model._cache = cache
    return cache


def _static_config(value) -> StaticCacheConfig:
    return value if isinstance(value, StaticCacheConfig) else StaticCacheConfig.from_dict(dict(value))


def _quantized(model, generation_config, batch_size: int, max_length: int, device, dtype) -> Cache:
    config = as_quantized_config(generation_config.cache_config)
    backends = {"native": QuantizedCache, "quanto": QuantoQuantizedCache, "HQQ": HQQQuantizedCache}
    return backends[config.backend](config)


def _offloaded(model, generation_config, batch_size: int, max_length: int, device, dtype) -> Cache:
    return OffloadedCache()


def _mamba(model, generation_config, batch_size: int, max_length: int, device, dtype) -> Cache:
    raise GenerationError(f"generate(): cache_implementation='mamba' is for Mamba models; "
                          f"{type(model).__name__} has attention layers (use 'static', 'sliding_window', ...)")


_BUILDERS: dict[str, Callable[..., Cache]] = {
    **{name: _fixed_shape for name in FIXED_SHAPE_CACHES},
    "quantized": _quantized, "offloaded": _offloaded, "mamba": _mamba,
}
