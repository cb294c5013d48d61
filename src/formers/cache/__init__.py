"""KV caches. Layout per layer: keys and values [B, Hkv, S, D]; one small module per cache class."""
from .base import Cache
from .config import CacheConfig, QuantizedCacheConfig, StaticCacheConfig
from .dynamic import DynamicCache
from .encoder_decoder import EncoderDecoderCache
from .hybrid import HybridCache
from .io import load_cache, save_cache
from .mamba import MambaCache
from .offloaded import OffloadedCache
from .offloaded_static import OffloadedStaticCache
from .package_quantized import HQQQuantizedCache, QuantoQuantizedCache
from .quantized import QuantizedCache
from .sink import SinkCache
from .sliding_window import SlidingWindowCache
from .static import StaticCache

__all__ = [
    "Cache", "CacheConfig", "DynamicCache", "EncoderDecoderCache", "HQQQuantizedCache", "HybridCache", "MambaCache",
    "OffloadedCache", "OffloadedStaticCache", "QuantizedCache", "QuantizedCacheConfig", "QuantoQuantizedCache",
    "SinkCache", "SlidingWindowCache", "StaticCache", "StaticCacheConfig", "load_cache", "save_cache",
]
