"""Which cache generate() decodes with: the user's, or a new one of the configured kind."""
from __future__ import annotations

from ..cache import Cache, DynamicCache
from ..errors import GenerationError


def prepare_generation_cache(model, generation_config, user_cache, use_cache: bool | None, *, batch_size: int,
                             max_length: int) -> Cache | None:
    """None when caching is off; the user's cache (legacy tuples converted); else a fresh cache of
    `generation_config.cache_implementation` sized for `batch_size` rows of `max_length` positions."""
    if use_cache is False or (use_cache is None and not generation_config.use_cache):
        return None
    if user_cache is not None:
        return user_cache if isinstance(user_cache, Cache) else DynamicCache.from_legacy_cache(user_cache)
    if generation_config.cache_implementation is not None:
        raise GenerationError(f"generate(): cache_implementation={generation_config.cache_implementation!r} "
                              f"is not supported yet by formers")
    return DynamicCache()
