"""transformers' module path for the cache classes (`from formers.cache_utils import DynamicCache`)."""
from .cache import Cache, DynamicCache

__all__ = ["Cache", "DynamicCache"]
