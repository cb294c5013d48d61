"""KV caches. Layout per layer: keys and values [B, Hkv, S, D]."""
from .base import Cache
from .dynamic import DynamicCache

__all__ = ["Cache", "DynamicCache"]
