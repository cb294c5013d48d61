"""transformers' module path for the cache classes (`from formers.cache_utils import StaticCache`)."""
from .cache import (Cache, CacheConfig, DynamicCache, EncoderDecoderCache, HQQQuantizedCache, HybridCache, MambaCache,
                    OffloadedCache, OffloadedStaticCache, QuantizedCache, QuantizedCacheConfig, QuantoQuantizedCache,
                    SinkCache, SlidingWindowCache, StaticCache, StaticCacheConfig, load_cache, save_cache)

__all__ = [
    "Cache", "CacheConfig", "DynamicCache", "EncoderDecoderCache", "HQQQuantizedCache", "HybridCache", "MambaCache",
    "OffloadedCache", "OffloadedStaticCache", "QuantizedCache", "QuantizedCacheConfig", "QuantoQuantizedCache",
    "SinkCache", "SlidingWindowCache", "StaticCache", "StaticCacheConfig", "load_cache", "save_cache",
]
