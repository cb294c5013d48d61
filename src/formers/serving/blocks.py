"""KV block bookkeeping: which fixed-size blocks are free, who holds each, and the prefix cache.

Every block holds `block_size` consecutive positions of one sequence. A *full* block is keyed by a
chain hash of every token up to its end (hash(parent key, its tokens)), so two prompts that share a
prefix share its blocks: the key depends on the whole prefix and hence on the absolute positions the
cached keys were rotated for. Blocks are reference counted; a cached block whose count drops to zero
stays reusable in an LRU list and is evicted (forgotten) only when a fresh block is needed.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

NO_BLOCK = -1  # a block-table entry freed because it lies entirely outside the sliding window


def chain_hashes(token_ids: list[int], block_size: int, start_key: bytes = b"", first_block: int = 0,
                 count: int | None = None) -> list[bytes]:
    """Keys of the full blocks `first_block`, ... of `token_ids` (`start_key`: the key of the block before)."""
    keys, key = [], start_key
    full = len(token_ids) // block_size
    last = full if count is None else min(full, first_block + count)
    for block in range(first_block, last):
        chunk = np.asarray(token_ids[block * block_size:(block + 1) * block_size], dtype=np.int64)
        key = hashlib.blake2b(key + chunk.tobytes(), digest_size=16).digest()
        keys.append(key)
    return keys


class BlockManager:
    """Allocates blocks 0..num_blocks-1, counts references and keeps the prefix cache (key -> block)."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self.block_key: list[bytes | None] = [None] * num_blocks
        self.cached: dict[bytes, int] = {}                     # key -> block holding it
        self.free: list[int] = list(range(num_blocks - 1, -1, -1))  # never cached; pop() gives low ids first
        self.evictable: OrderedDict[int, None] = OrderedDict()   # cached blocks with no holder, LRU first
        self.queries = self.hits = 0

    # --- accounting ---------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Blocks that can be handed out now (free or evictable)."""
        return len(self.free) + len(self.evictable)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    # --- allocation ---------------------------------------------------------------------------
    def allocate(self, count: int) -> list[int] | None:
        """`count` fresh blocks (reference 1 each), or None (and nothing taken) when too few are left."""
        if count > self.num_free:
            return None
        blocks = []
        for _ in range(count):
            if self.free:
                block = self.free.pop()
            else:  # evict the least recently used cached block
                block, _ = self.evictable.popitem(last=False)
                del self.cached[self.block_key[block]]
                self.block_key[block] = None
            self.ref_counts[block] = 1
            blocks.append(block)
        return blocks

    def release(self, blocks: list[int]) -> None:
        """Drop one reference to each block; unheld cached blocks become evictable (most recent last)."""
        for block in reversed(blocks):  # the prefix's tail evicted before its head
            if block == NO_BLOCK:
                continue
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                if self.block_key[block] is not None:
                    self.evictable[block] = None
                else:
                    self.free.append(block)

    # --- the prefix cache ------------------------------------------------------------------------
    def lookup(self, keys: list[bytes]) -> list[int]:
        """Take a reference on the longest run of cached blocks matching `keys` from the start."""
        found = []
        if not self.enable_prefix_caching:
            return found
        for key in keys:
            block = self.cached.get(key)
            if block is None:
                break
            if self.ref_counts[block] == 0:
                del self.evictable[block]
            self.ref_counts[block] += 1
            found.append(block)
        self.queries += len(keys)
        self.hits += len(found)
        return found

    def register(self, block: int, key: bytes) -> None:
        """Record that the full block `block` holds the prefix with `key` (first holder of a key wins)."""
        if self.enable_prefix_caching and key not in self.cached and self.block_key[block] is None:
            self.cached[key] = block
            self.block_key[block] = key

    def reset_prefix_cache(self) -> None:
        """Forget every cached key (blocks in use keep their contents; evictable ones become free)."""
        for block in self.evictable:
            self.free.append(block)
        self.evictable.clear()
        self.cached.clear()
        self.block_key = [None] * self.num_blocks
